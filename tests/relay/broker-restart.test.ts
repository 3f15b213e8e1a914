import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { conveyorHome } from '../../libs/config/index.ts';
import { withTransaction } from '../../libs/db/index.ts';
import { HEADER } from '../../libs/kafka/index.ts';
import { createLogger, createMetrics } from '../../libs/observability/index.ts';
import { appendEvents, type NewEvent, topicFor } from '../../libs/outbox/index.ts';
import { SchemaRegistryClient } from '../../libs/registry/index.ts';
import { Relay } from '../../services/relay/relay.ts';
import { runCli } from '../cli/run-cli.ts';
import { registryUrl, testKafka, testPool, uniqueName } from '../helpers/real-stack.ts';
import { readTopics } from '../helpers/topics.ts';

const pool = testPool(10);
afterAll(() => pool.end());

function batch(source: string, from: number, count: number): NewEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    source,
    eventId: `${source}-${from + i}`,
    eventType: 'ping',
    entityKey: `k-${(from + i) % 11}`,
    eventTime: new Date(),
    payload: { seq: from + i },
  }));
}

/** The broker this test may stop: the one `conveyor stack up` started and recorded. */
function stackKafkaPid(): number | undefined {
  const file = path.join(conveyorHome(), 'stack', 'pids', 'kafka.json');
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as { pid: number }).pid : undefined;
}

describe('relay across a broker stop and start', () => {
  it.skipIf(stackKafkaPid() === undefined)(
    'loses nothing: rows written while Kafka is down are published once it is back',
    async () => {
      const source = uniqueName('relay-broker');
      const relay = new Relay({
        pool,
        databaseUrl: process.env.DATABASE_URL!,
        kafka: testKafka(),
        registry: new SchemaRegistryClient(registryUrl()),
        logger: createLogger('relay-test', { level: 'silent' }),
        metrics: createMetrics('relay-test'),
        autoRegister: true,
        leaseTtlMs: 2000,
        pollIntervalMs: 200,
      });
      await relay.start();
      try {
        await withTransaction(pool, (c) => appendEvents(c, batch(source, 0, 500)));

        const pid = stackKafkaPid()!;
        process.kill(pid, 'SIGTERM');
        while (
          (() => {
            try {
              process.kill(pid, 0);
              return true;
            } catch {
              return false;
            }
          })()
        ) {
          await new Promise((r) => setTimeout(r, 200));
        }
        // Written while the broker is down: the relay must keep them and retry.
        await withTransaction(pool, (c) => appendEvents(c, batch(source, 500, 500)));
        await new Promise((r) => setTimeout(r, 2000));
        const up = await runCli(['stack', 'up'], {}, 180_000);
        expect(up.code, up.stderr).toBe(0);

        const deadline = Date.now() + 120_000;
        for (;;) {
          const { rows } = await pool.query(
            'SELECT count(*)::int AS n FROM outbox WHERE source = $1 AND published_at IS NULL',
            [source],
          );
          if (rows[0].n === 0) break;
          if (Date.now() > deadline) throw new Error(`${rows[0].n} rows still unpublished after the broker restart`);
          await new Promise((r) => setTimeout(r, 250));
        }
      } finally {
        await relay.stop();
      }
      const records = await readTopics(
        testKafka(),
        [topicFor(source)],
        (r) => new Set(r.map((x) => x.headers[HEADER.eventId])).size >= 1000,
        120_000,
      );
      expect(new Set(records.map((r) => r.headers[HEADER.eventId])).size).toBe(1000);
    },
    300_000,
  );
});
