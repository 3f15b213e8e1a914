import { boolSetting, intSetting, portSetting } from '../../libs/config/index.ts';
import { createPool, databaseUrl } from '../../libs/db/index.ts';
import { createKafka } from '../../libs/kafka/index.ts';
import { createLogger, createMetrics, shutdownSignal, startOpsServer } from '../../libs/observability/index.ts';
import { SchemaRegistryClient } from '../../libs/registry/index.ts';
import { Relay } from './relay.ts';

/** `conveyor relay`: runs until SIGTERM / SIGINT, then finishes its batches and releases its shards. */
export async function runRelay(): Promise<void> {
  const logger = createLogger('relay');
  const metrics = createMetrics('relay');
  const pool = createPool({ max: 12, applicationName: 'conveyor-relay' });
  const relay = new Relay({
    pool,
    databaseUrl: databaseUrl(),
    kafka: createKafka({ clientId: 'conveyor-relay', logger }),
    registry: new SchemaRegistryClient(),
    logger,
    metrics,
    batchSize: intSetting('RELAY_BATCH_SIZE', process.env, 1),
    autoRegister: boolSetting('RELAY_AUTO_REGISTER'),
    topicPartitions: intSetting('RELAY_TOPIC_PARTITIONS', process.env, 1),
    retentionMs: intSetting('RELAY_RETENTION_HOURS') * 3600_000,
    leaseTtlMs: intSetting('RELAY_LEASE_TTL_MS', process.env, 1000),
  });
  // Listening before the relay takes shard leases: a taken RELAY_PORT fails here, naming it.
  const ops = await startOpsServer({
    port: portSetting('RELAY_PORT', process.env, { anyFree: true }),
    setting: 'RELAY_PORT',
    metrics,
    healthy: () => true,
    ready: async () =>
      await pool.query('SELECT 1').then(
        () => true,
        () => false,
      ),
  });
  try {
    await relay.start();
  } catch (error) {
    await ops.close();
    throw error;
  }
  logger.info({ port: ops.port }, 'relay ops endpoints: /metrics /healthz /readyz');

  await shutdownSignal(logger, 'finishing in-flight batches');
  await relay.stop();
  await ops.close();
  await pool.end();
}
