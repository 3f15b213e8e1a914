import path from 'node:path';
import { conveyorHome, intSetting, listSetting, portSetting, setting } from '../../libs/config/index.ts';
import { createPool } from '../../libs/db/index.ts';
import { createKafka, EVENT_TOPIC_PATTERN } from '../../libs/kafka/index.ts';
import { SilverWriter } from '../../libs/lake/silver.ts';
import { LocalDirStorage } from '../../libs/lake/storage.ts';
import { createLogger, createMetrics, shutdownSignal, startOpsServer } from '../../libs/observability/index.ts';
import { SchemaRegistryClient } from '../../libs/registry/index.ts';
import { Sink } from './sink.ts';

export function outputDir(env: NodeJS.ProcessEnv = process.env): string {
  const configured = setting('SINK_OUTPUT_DIR', env);
  return configured ? path.resolve(configured) : path.join(conveyorHome(env), 'lake');
}

/** `conveyor sink`: runs until SIGTERM / SIGINT, then writes and commits the batch in progress. */
export async function runSink(): Promise<void> {
  const logger = createLogger('sink');
  const metrics = createMetrics('sink');
  const consumers = intSetting('SINK_CONSUMERS', process.env, 1);
  const partitionsConcurrently = intSetting('SINK_PARTITIONS_CONCURRENTLY', process.env, 1);
  // Per lane: the partition's fence (held while its files are written), and its claim or an entity
  // merge; plus the expiry and readiness checks. Fewer could leave every lane holding a fence and
  // waiting for a merge connection.
  const lanes = consumers * partitionsConcurrently;
  const pool = createPool({ max: 2 * lanes + 2, applicationName: 'conveyor-sink' });
  const storage = new LocalDirStorage(outputDir());
  const silver = await SilverWriter.create(storage, { memoryLimit: setting('SINK_DUCKDB_MEMORY') });
  const topics = listSetting('SINK_TOPICS');
  const sink = new Sink({
    kafka: createKafka({ clientId: 'conveyor-sink', logger }),
    registry: new SchemaRegistryClient(),
    pool,
    storage,
    silver,
    logger,
    metrics,
    groupId: setting('SINK_GROUP_ID'),
    topics: topics.length > 0 ? topics : EVENT_TOPIC_PATTERN,
    rotation: {
      maxRecords: intSetting('SINK_FILE_MAX_RECORDS', process.env, 1),
      maxBytes: intSetting('SINK_FILE_MAX_BYTES', process.env, 1),
      maxSpanMs: intSetting('SINK_FILE_MAX_SPAN_MS', process.env, 1),
    },
    entitySources: new Set(listSetting('SINK_ENTITY_SOURCES')),
    consumers,
    partitionsConcurrently,
    maxBytesPerPartition: intSetting('SINK_FETCH_MAX_BYTES', process.env, 1024),
    dedupeRetentionDays: intSetting('SINK_DEDUPE_RETENTION_DAYS'),
    sessionTimeoutMs: intSetting('SINK_SESSION_TIMEOUT_MS', process.env, 6000),
  });
  // Listening before the sink joins its consumer group: a wrong or taken SINK_PORT fails here, naming
  // it, not after the group has rebalanced to take this sink in. /healthz says 503 until it runs.
  const ops = await startOpsServer({
    port: portSetting('SINK_PORT', process.env, { anyFree: true }),
    setting: 'SINK_PORT',
    metrics,
    healthy: () => sink.isRunning,
    ready: async () =>
      sink.isRunning &&
      (await pool.query('SELECT 1').then(
        () => true,
        () => false,
      )),
  });
  try {
    await sink.start();
  } catch (error) {
    await ops.close();
    throw error;
  }
  logger.info({ port: ops.port, output: storage.root }, 'sink running; ops endpoints: /metrics /healthz /readyz');

  await shutdownSignal(logger, 'writing and committing the batch in progress');
  await sink.stop();
  await ops.close();
  await silver.close();
  await pool.end();
  logger.info('sink stopped');
}
