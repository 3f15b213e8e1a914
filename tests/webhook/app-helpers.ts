import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { databaseUrl } from '../../libs/db/index.ts';
import { createLogger, createMetrics } from '../../libs/observability/index.ts';
import { buildWebhookApp, type WebhookAppOptions } from '../../services/webhook/app.ts';
import { PayloadContracts } from '../../services/webhook/contracts.ts';
import type { WebhookSource } from '../../services/webhook/sources.ts';

export const STANDARD_SECRET = `whsec_${Buffer.from('a standard webhooks test key!!!!').toString('base64')}`;

/** Sources with names unique to this run, so tests never see each other's rows. */
export function testSources(): Record<'github' | 'stripe' | 'standard' | 'hmac' | 'hmacNoId', WebhookSource> {
  const run = randomUUID().slice(0, 8);
  return {
    github: { name: `gh-${run}`, scheme: 'github', secrets: ['gh-new', 'gh-old'], secretEnv: ['A', 'B'] },
    stripe: { name: `stripe-${run}`, scheme: 'stripe', secrets: ['whsec_stripe'], secretEnv: ['C'] },
    standard: { name: `std-${run}`, scheme: 'standard-webhooks', secrets: [STANDARD_SECRET], secretEnv: ['D'] },
    hmac: {
      name: `hmac-${run}`,
      scheme: 'hmac',
      secrets: ['hmac-key'],
      secretEnv: ['E'],
      hmac: { header: 'x-acme-signature', encoding: 'hex', prefix: 'sha256=' },
      idHeader: 'x-acme-delivery',
      typeHeader: 'x-acme-event',
      entityKeyPath: 'account.id',
    },
    hmacNoId: {
      name: `hmac2-${run}`,
      scheme: 'hmac',
      secrets: ['hmac-key'],
      secretEnv: ['E'],
      hmac: { header: 'x-sig', encoding: 'base64', prefix: '' },
    },
  };
}

export interface TestApp {
  app: FastifyInstance;
  pool: pg.Pool;
  close: () => Promise<void>;
}

export async function startApp(sources: WebhookSource[], overrides: Partial<WebhookAppOptions> = {}): Promise<TestApp> {
  const poolMax = overrides.poolMax ?? 5;
  const pool = new pg.Pool({ connectionString: databaseUrl(), max: poolMax, connectionTimeoutMillis: 2000 });
  const app = await buildWebhookApp({
    pool,
    poolMax,
    maxWaiting: 256,
    sources: new Map(sources.map((s) => [s.name, s])),
    contracts: new PayloadContracts(),
    logger: createLogger('webhook-test', { level: 'silent' }),
    metrics: createMetrics('webhook-test'),
    bodyLimit: 64 * 1024,
    maxJsonDepth: 32,
    batchMaxEvents: 100,
    maxFutureMs: 86_400_000,
    dryRun: false,
    dedupeCacheSize: 0,
    ...overrides,
  });
  return {
    app,
    pool,
    close: async () => {
      await app.close();
      await pool.end();
    },
  };
}

/** Rows stored for a source: raw events and outbox rows. */
export async function counts(pool: pg.Pool, source: string): Promise<{ events: number; outbox: number }> {
  const { rows } = await pool.query<{ events: number; outbox: number }>(
    `SELECT (SELECT count(*)::int FROM raw_events WHERE source = $1) AS events,
            (SELECT count(*)::int FROM outbox WHERE source = $1) AS outbox`,
    [source],
  );
  return rows[0]!;
}
