import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../../libs/db/index.ts';
import { HEADER } from '../../libs/kafka/index.ts';
import { appendEvents, type NewEvent, topicFor } from '../../libs/outbox/index.ts';
import { SchemaRegistryClient, wireSchemaId } from '../../libs/registry/index.ts';
import { registryUrl, testKafka, testPool, uniqueName } from '../helpers/real-stack.ts';
import { readTopics } from '../helpers/topics.ts';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor.mjs');
const pool = testPool(5);
const kafka = testKafka();
const registry = new SchemaRegistryClient(registryUrl());
const children: ChildProcess[] = [];

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await pool.end();
});

/** `conveyor relay` as its own process, the way it runs in production. */
function spawnRelay(): ChildProcess {
  const child = spawn(process.execPath, [BIN, 'relay'], {
    env: {
      ...process.env,
      RELAY_PORT: '0',
      RELAY_AUTO_REGISTER: 'true',
      RELAY_BATCH_SIZE: '100',
      RELAY_LEASE_TTL_MS: '1500',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  children.push(child);
  return child;
}

async function publishedCount(source: string): Promise<number> {
  const { rows } = await pool.query(
    'SELECT count(*)::int AS n FROM outbox WHERE source = $1 AND published_at IS NOT NULL',
    [source],
  );
  return rows[0].n;
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

describe('relay under kill -9', () => {
  it('after repeated SIGKILLs mid-stream, every outbox row is on the topic, re-publications carry the same event id, and per-key order holds', async () => {
    const source = uniqueName('relay-crash');
    const total = 10_000;
    const events: NewEvent[] = Array.from({ length: total }, (_, i) => ({
      source,
      eventId: `${source}-${i}`,
      eventType: 'order.updated',
      entityKey: `order-${i % 97}`,
      eventTime: new Date(Date.UTC(2026, 10, 1) + i * 1000),
      payload: { seq: i, body: 'x'.repeat(200) },
    }));
    for (let i = 0; i < total; i += 2000) {
      await withTransaction(pool, (c) => appendEvents(c, events.slice(i, i + 2000)));
    }

    // Kill the relay at random points while it publishes: each time, wait until it has made some
    // progress past where the last one died, then a random extra moment, then SIGKILL.
    const killedAt: number[] = [];
    for (let round = 0; round < 4; round++) {
      const before = await publishedCount(source);
      if (before >= total) break;
      const relay = spawnRelay();
      const deadline = Date.now() + 30_000;
      while ((await publishedCount(source)) === before && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 150)));
      relay.kill('SIGKILL');
      await exited(relay);
      killedAt.push(await publishedCount(source));
    }
    // The test only means something if relays died with work left to do.
    expect(killedAt.some((n) => n > 0 && n < total)).toBe(true);

    const last = spawnRelay();
    const deadline = Date.now() + 90_000;
    while ((await publishedCount(source)) < total) {
      if (Date.now() > deadline) throw new Error(`only ${await publishedCount(source)} of ${total} published`);
      await new Promise((r) => setTimeout(r, 200));
    }
    last.kill('SIGTERM');
    await exited(last);

    const records = await readTopics(
      kafka,
      [topicFor(source)],
      (r) => new Set(r.map((x) => x.headers[HEADER.eventId])).size >= total,
      120_000,
    );
    const firstBytes = new Map<string, Buffer>();
    const sequences = new Map<string, number[]>();
    let republished = 0;
    for (const record of records) {
      const id = record.headers[HEADER.eventId]!;
      const earlier = firstBytes.get(id);
      if (earlier) {
        republished++;
        // A re-publication is the same event: same id, same key, same bytes.
        expect(record.value.equals(earlier), `re-published ${id} differs`).toBe(true);
        continue;
      }
      firstBytes.set(id, record.value);
      const type = await registry.typeOf(wireSchemaId(record.value));
      const envelope = type.fromBuffer(record.value.subarray(5)) as { event_id: string; payload: string };
      expect(envelope.event_id).toBe(id);
      const list = sequences.get(record.key) ?? [];
      list.push((JSON.parse(envelope.payload) as { seq: number }).seq);
      sequences.set(record.key, list);
    }
    expect(firstBytes.size).toBe(total);
    for (const [key, seqs] of sequences) {
      expect(
        seqs.every((s, i) => i === 0 || s > seqs[i - 1]!),
        `per-key order of ${key}`,
      ).toBe(true);
    }
    console.log(
      `relay crash drill: killed at ${killedAt.join(', ')} published rows; ${records.length} records on the topic, ${republished} re-published`,
    );
  }, 240_000);
});
