import pg from 'pg';
import { boolSetting, intSetting, portSetting, setting } from '../../libs/config/index.ts';
import { databaseUrl } from '../../libs/db/index.ts';
import { createLogger, createMetrics } from '../../libs/observability/index.ts';
import { buildWebhookApp } from './app.ts';
import { PayloadContracts } from './contracts.ts';
import { loadSources } from './sources.ts';

/** How long a request waits for a Postgres connection before it is answered 503. */
const ACQUIRE_TIMEOUT_MS = 2000;
/** Recent events only: retry storms replay recent deliveries, and a few MB of keys is enough. */
const DEDUPE_CACHE_SIZE = 10_000;

/** `conveyor webhook`: serves /webhooks/:source and /ingest until SIGTERM / SIGINT, then drains. */
export async function runWebhook(): Promise<void> {
  const logger = createLogger('webhook');
  const sources = loadSources(setting('WEBHOOK_SOURCES_FILE'));
  const contracts = new PayloadContracts();
  const poolMax = intSetting('WEBHOOK_DB_POOL_MAX', process.env, 1);
  const pool = new pg.Pool({
    connectionString: databaseUrl(),
    max: poolMax,
    application_name: 'conveyor-webhook',
    connectionTimeoutMillis: ACQUIRE_TIMEOUT_MS,
  });
  // An idle connection dropped by the server must not crash the process; the next checkout reconnects.
  pool.on('error', (error) => logger.warn({ err: error }, 'idle Postgres connection lost'));
  const app = await buildWebhookApp({
    pool,
    poolMax,
    maxWaiting: intSetting('WEBHOOK_DB_MAX_WAITING'),
    sources,
    contracts,
    logger,
    metrics: createMetrics('webhook'),
    bodyLimit: intSetting('WEBHOOK_BODY_LIMIT', process.env, 1),
    maxJsonDepth: intSetting('WEBHOOK_MAX_JSON_DEPTH', process.env, 1),
    batchMaxEvents: intSetting('INGEST_BATCH_MAX_EVENTS', process.env, 1),
    maxFutureMs: intSetting('INGEST_MAX_FUTURE_SECONDS') * 1000,
    dryRun: boolSetting('DRY_RUN'),
    dedupeCacheSize: DEDUPE_CACHE_SIZE,
  });
  await app.listen({
    port: portSetting('WEBHOOK_PORT', process.env, { anyFree: true }),
    host: setting('WEBHOOK_HOST'),
  });
  const address = app.server.address();
  logger.info(
    {
      port: typeof address === 'object' && address ? address.port : undefined,
      // Names of the variables only: the secrets themselves never reach a log.
      sources: [...sources.values()].map((s) => ({ name: s.name, scheme: s.scheme, secret_env: s.secretEnv })),
      payload_contracts: contracts.size,
      dry_run: boolSetting('DRY_RUN'),
    },
    'webhook service listening',
  );

  const signal = await new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  logger.info({ signal }, 'shutting down: finishing in-flight requests');
  // close() stops accepting, answers 503 on kept-alive connections and waits for in-flight handlers,
  // each of which either committed before answering 2xx or rolled back.
  await app.close();
  await pool.end();
  logger.info('webhook service stopped');
}
