import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { withTransaction } from '../../libs/db/index.ts';
import { DLQ_HEADER, DLQ_TOPIC, HEADER } from '../../libs/kafka/index.ts';
import { createLogger, createMetrics } from '../../libs/observability/index.ts';
import { appendEvents, type NewEvent, topicFor } from '../../libs/outbox/index.ts';
import { DEFAULT_SCHEMAS_DIR } from '../../libs/registry/contracts.ts';
import { SchemaRegistryClient, valueSubject, wireSchemaId } from '../../libs/registry/index.ts';
import { Relay, type RelayOptions } from '../../services/relay/relay.ts';
import { runCli } from '../cli/run-cli.ts';
import { registryUrl, testKafka, testPool, uniqueName } from '../helpers/real-stack.ts';
import { readTopics } from '../helpers/topics.ts';

const pool = testPool(20);
const kafka = testKafka();
const registry = new SchemaRegistryClient(registryUrl());
const relays: Relay[] = [];

function startRelay(options: Partial<RelayOptions> = {}): Promise<Relay> {
  const relay = new Relay({
    pool,
    databaseUrl: process.env.DATABASE_URL!,
    kafka,
    registry,
    logger: createLogger('relay-test', { level: 'silent' }),
    metrics: createMetrics('relay-test'),
    autoRegister: true,
    leaseTtlMs: 2000,
    pollIntervalMs: 200,
    ...options,
  });
  relays.push(relay);
  return relay.start().then(() => relay);
}

function events(
  source: string,
  count: number,
  keys: number,
  payload: (i: number) => Record<string, unknown> = (i) => ({ seq: i }),
): NewEvent[] {
  return Array.from({ length: count }, (_, i) => ({
    source,
    eventId: `${source}-${i}`,
    eventType: 'thing.changed',
    entityKey: `key-${i % keys}`,
    eventTime: new Date(Date.UTC(2026, 10, 1, 0, 0, i % 60)),
    payload: payload(i),
    lineage: { request: `req-${i}` },
  }));
}

async function append(batch: NewEvent[]): Promise<void> {
  for (let i = 0; i < batch.length; i += 1000) {
    await withTransaction(pool, (c) => appendEvents(c, batch.slice(i, i + 1000)));
  }
}

async function pendingCount(source: string): Promise<number> {
  const { rows } = await pool.query(
    'SELECT count(*)::int AS n FROM outbox WHERE source = $1 AND published_at IS NULL AND failed_at IS NULL',
    [source],
  );
  return rows[0].n;
}

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Per key, the payload sequence numbers in topic order, first occurrence of each event only. */
async function decodedByKey(records: Awaited<ReturnType<typeof readTopics>>): Promise<Map<string, number[]>> {
  const seen = new Set<string>();
  const byKey = new Map<string, number[]>();
  for (const r of records) {
    const id = r.headers[HEADER.eventId]!;
    if (seen.has(id)) continue;
    seen.add(id);
    const type = await registry.typeOf(wireSchemaId(r.value));
    const envelope = type.fromBuffer(r.value.subarray(5)) as { payload: string };
    const list = byKey.get(r.key) ?? [];
    list.push((JSON.parse(envelope.payload) as { seq: number }).seq);
    byKey.set(r.key, list);
  }
  return byKey;
}

function expectAscending(byKey: Map<string, number[]>): void {
  for (const [key, seqs] of byKey) {
    expect(
      seqs.every((s, i) => i === 0 || s > seqs[i - 1]!),
      `order of ${key}`,
    ).toBe(true);
  }
}

afterAll(async () => {
  await Promise.all(relays.map((r) => r.stop()));
  await pool.end();
});

describe('relay', () => {
  it('makes its LISTEN connection again when Postgres drops it, and publishes on notifications again', async () => {
    const listeners = async () =>
      (
        await pool.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE application_name = 'conveyor-relay-listen'",
        )
      ).rows.map((r) => r.pid);
    const others = new Set(await listeners());
    // Lease renewals (which also wake the pump) and polling far apart: publishing soon needs LISTEN.
    const relay = await startRelay({ leaseTtlMs: 60_000, pollIntervalMs: 60_000 });
    const mine = (await listeners()).filter((pid) => !others.has(pid));
    expect(mine).toHaveLength(1);
    await pool.query('SELECT pg_terminate_backend($1)', [mine[0]]);
    await waitUntil(async () => (await listeners()).some((pid) => !others.has(pid) && pid !== mine[0]), 15_000);
    const source = uniqueName('relay-relisten');
    await append(events(source, 20, 3));
    await waitUntil(async () => (await pendingCount(source)) === 0, 15_000);
    await relay.stop();
  });

  it('publishes Avro envelopes in Confluent wire format with key, headers and lineage, and marks rows published', async () => {
    const source = uniqueName('relay-basic');
    await append(events(source, 300, 7));
    const relay = await startRelay();
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await relay.stop();

    const records = await readTopics(kafka, [topicFor(source)], (r) => r.length >= 300);
    expect(records).toHaveLength(300);
    const first = records.find((r) => r.headers[HEADER.eventId] === `${source}-0`)!;
    expect(first.key).toBe('key-0');
    expect(first.headers[HEADER.source]).toBe(source);
    expect(first.headers[HEADER.eventType]).toBe('thing.changed');
    expect(first.value.readUInt8(0)).toBe(0);
    const type = await registry.typeOf(wireSchemaId(first.value));
    const envelope = type.fromBuffer(first.value.subarray(5)) as Record<string, unknown>;
    expect(envelope).toMatchObject({
      event_id: `${source}-0`,
      source,
      entity_key: 'key-0',
      event_time: Date.UTC(2026, 10, 1, 0, 0, 0),
      payload: '{"seq": 0}',
      lineage: { request: 'req-0', outbox_id: first.headers[HEADER.outboxId] },
    });
    expectAscending(await decodedByKey(records));
  });

  it('two relays at once share the shards and keep per-key order', async () => {
    const source = uniqueName('relay-two');
    const a = await startRelay();
    const b = await startRelay();
    // Writers keep appending while both relays run and rebalance.
    for (let round = 0; round < 5; round++) {
      await append(events(source, 2000, 40).slice(round * 400, round * 400 + 400));
      await new Promise((r) => setTimeout(r, 150));
    }
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await waitUntil(async () => a.shardsHeld.length > 0 && b.shardsHeld.length > 0, 10_000);
    expect(a.shardsHeld.filter((s) => b.shardsHeld.includes(s))).toEqual([]);
    await Promise.all([a.stop(), b.stop()]);

    const records = await readTopics(
      kafka,
      [topicFor(source)],
      (r) => new Set(r.map((x) => x.headers[HEADER.eventId])).size >= 2000,
    );
    const byKey = await decodedByKey(records);
    expect([...byKey.values()].flat()).toHaveLength(2000);
    expectAscending(byKey);
  });

  it('publishes each row once while it drains a backlog in small batches and while it keeps up with a writer', async () => {
    // Each batch is read while the one before is in Kafka or being marked; those rows must be left out.
    const source = uniqueName('relay-once');
    const all = events(source, 1200, 13);
    await append(all.slice(0, 600));
    const metrics = createMetrics('relay-once');
    // A slow marking update: the next batches are read while it runs.
    const slowMarking = new Proxy(pool, {
      get(target, property, receiver) {
        if (property !== 'query') return Reflect.get(target, property, receiver);
        return async (...args: Parameters<typeof pool.query>) => {
          if (String(args[0]).startsWith('UPDATE outbox SET published_at')) await new Promise((r) => setTimeout(r, 60));
          return (target.query as (...a: unknown[]) => unknown)(...args);
        };
      },
    });
    const relay = await startRelay({ batchSize: 40, metrics, pool: slowMarking });
    await waitUntil(async () => (await pendingCount(source)) === 0);
    for (let i = 600; i < 1200; i += 20) {
      await append(all.slice(i, i + 20));
      await new Promise((r) => setTimeout(r, 30));
    }
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await relay.stop();

    // Counted once per row in a committed transaction: a row sent twice would count twice.
    const published = (await metrics.getSingleMetric('conveyor_relay_published_total')!.get()).values;
    expect(published.reduce((sum, v) => sum + v.value, 0)).toBe(1200);
    const records = await readTopics(
      kafka,
      [topicFor(source)],
      (r) => new Set(r.map((x) => x.headers[HEADER.eventId])).size >= 1200,
    );
    expectAscending(await decodedByKey(records));
  });

  it('sends a row that does not fit its contract to the DLQ with the reason, marks it failed, and the rest flow', async () => {
    const source = uniqueName('relay-dlq');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
    fs.mkdirSync(path.join(dir, 'sources'));
    fs.copyFileSync(path.join(DEFAULT_SCHEMAS_DIR, 'envelope.avsc'), path.join(dir, 'envelope.avsc'));
    fs.writeFileSync(
      path.join(dir, 'sources', `${source}.avsc`),
      JSON.stringify({ type: 'record', name: 'Payment', fields: [{ name: 'seq', type: 'long' }] }),
    );
    await append(events(source, 10, 2, (i) => (i === 4 ? { seq: 'four' } : { seq: i })));
    const relay = await startRelay({ schemasDir: dir });
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await relay.stop();

    const { rows } = await pool.query(
      'SELECT event_id, failure FROM outbox WHERE source = $1 AND failed_at IS NOT NULL',
      [source],
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].event_id).toBe(`${source}-4`);
    expect(rows[0].failure).toContain('payload.seq');

    const good = await readTopics(kafka, [topicFor(source)], (r) => r.length >= 9);
    expect(good.map((r) => r.headers[HEADER.eventId]).sort()).toEqual(
      [0, 1, 2, 3, 5, 6, 7, 8, 9].map((i) => `${source}-${i}`).sort(),
    );
    const dlq = await readTopics(kafka, [DLQ_TOPIC], (r) => r.some((x) => x.headers[HEADER.eventId] === `${source}-4`));
    const dead = dlq.find((x) => x.headers[HEADER.eventId] === `${source}-4`)!;
    expect(dead.headers[DLQ_HEADER.reason]).toBe('encode_failed');
    expect(dead.headers[DLQ_HEADER.stage]).toBe('relay');
    expect(dead.headers[DLQ_HEADER.originalTopic]).toBe(topicFor(source));
    expect(dead.headers[DLQ_HEADER.message]).toContain('payload.seq');
    expect(JSON.parse(dead.value.toString()).payload).toEqual({ seq: 'four' });
  });

  it('dlq replay puts a dead-lettered row back in the outbox once its contract is fixed, and the relay publishes it', async () => {
    const source = uniqueName('relay-requeue');
    const topic = topicFor(source);
    const contractDir = (seq: Record<string, unknown>) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
      fs.mkdirSync(path.join(dir, 'sources'));
      fs.copyFileSync(path.join(DEFAULT_SCHEMAS_DIR, 'envelope.avsc'), path.join(dir, 'envelope.avsc'));
      fs.writeFileSync(
        path.join(dir, 'sources', `${source}.avsc`),
        JSON.stringify({ type: 'record', name: 'Tick', fields: [{ name: 'seq', type: 'long', ...seq }] }),
      );
      return dir;
    };
    // Event 3 has no seq: the first contract requires one, the fixed one gives it a default.
    await append(events(source, 6, 2, (i) => (i === 3 ? { note: 'no seq' } : { seq: i })));
    const metrics = createMetrics('relay-requeue-test');
    const strict = await startRelay({ schemasDir: contractDir({}), metrics });
    await waitUntil(async () => (await pendingCount(source)) === 0);
    expect(await failedCount(source)).toBe(1);
    await strict.measureFailed();
    const { rows: failedRows } = await pool.query('SELECT count(*)::int AS n FROM outbox WHERE failed_at IS NOT NULL');
    expect(await metrics.metrics()).toMatch(
      new RegExp(`conveyor_relay_outbox_failed\\{[^}]*\\} ${failedRows[0].n}\\n`),
    );
    await strict.stop();
    // The DLQ copy is on the topic before the row is marked failed.
    const env = { DATABASE_URL: process.env.DATABASE_URL };
    const args = ['dlq', 'replay', '--topic', topic, '--reason', 'encode_failed'];

    const dry = await runCli([...args, '--dry-run'], env);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('1 outbox row(s) would be put back for the relay');
    expect(await failedCount(source)).toBe(1);

    const replay = await runCli(args, env);
    expect(replay.code, replay.stderr).toBe(0);
    expect(replay.stdout).toContain('1 outbox row(s) were put back for the relay');
    expect(await failedCount(source)).toBe(0);
    const again = await runCli(args, env);
    expect(again.stdout).toContain('0 outbox row(s) were put back for the relay (1 not failed any more');

    const fixed = await startRelay({ schemasDir: contractDir({ default: -1 }) });
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await fixed.stop();
    expect(await failedCount(source)).toBe(0);
    const records = await readTopics(kafka, [topic], (r) => r.length >= 6);
    expect(records.map((r) => r.headers[HEADER.eventId]).sort()).toEqual(
      Array.from({ length: 6 }, (_, i) => `${source}-${i}`).sort(),
    );
    const requeued = records.find((r) => r.headers[HEADER.eventId] === `${source}-3`)!;
    const type = await registry.typeOf(wireSchemaId(requeued.value));
    expect((type.fromBuffer(requeued.value.subarray(5)) as { payload: { seq: number } }).payload.seq).toBe(-1);
  }, 120_000);

  it('the schema gate holds back rows of a topic whose schema would break consumers, and lets them go once fixed', async () => {
    const source = uniqueName('relay-gate');
    const subject = valueSubject(topicFor(source));
    const dirFor = (fields: unknown[]) => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'schemas-'));
      fs.mkdirSync(path.join(dir, 'sources'));
      fs.copyFileSync(path.join(DEFAULT_SCHEMAS_DIR, 'envelope.avsc'), path.join(dir, 'envelope.avsc'));
      fs.writeFileSync(
        path.join(dir, 'sources', `${source}.avsc`),
        JSON.stringify({ type: 'record', name: 'Order', fields }),
      );
      return dir;
    };
    const v1 = dirFor([
      { name: 'seq', type: 'long' },
      { name: 'amount', type: 'long' },
    ]);
    const renamed = dirFor([
      { name: 'seq', type: 'long' },
      { name: 'total', type: 'long' },
    ]);
    const added = dirFor([
      { name: 'seq', type: 'long' },
      { name: 'amount', type: 'long' },
      { name: 'note', type: ['null', 'string'], default: null },
    ]);

    const registered = await runCli(['schema', 'register', '--dir', v1, '--source', source], {
      SCHEMA_REGISTRY_URL: registryUrl(),
    });
    expect(registered.code, registered.stderr).toBe(0);
    await registry.setCompatibility(subject, 'BACKWARD');

    const check = await runCli(['schema', 'check', '--dir', renamed, '--source', source], {
      SCHEMA_REGISTRY_URL: registryUrl(),
    });
    expect(check.code).toBe(1);
    expect(check.stdout).toContain(`FAIL  ${subject} (BACKWARD)`);
    expect(check.stdout).toContain("field 'payload.total'");

    await append(events(source, 20, 3, (i) => ({ seq: i, amount: i * 10 })));
    const metrics = createMetrics('relay-gate-test');
    const refused = await startRelay({ schemasDir: renamed, autoRegister: false, metrics });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await pendingCount(source)).toBe(20);
    const text = await metrics.metrics();
    expect(text).toMatch(
      new RegExp(`conveyor_relay_schema_refusals_total\\{topic="${topicFor(source)}"[^}]*\\} [1-9]`),
    );
    await refused.stop();
    expect((await registry.history(subject)).length).toBe(1);

    const ok = await runCli(['schema', 'check', '--dir', added, '--source', source], {
      SCHEMA_REGISTRY_URL: registryUrl(),
    });
    expect(ok.code, ok.stdout).toBe(0);

    const relay = await startRelay({ schemasDir: added, autoRegister: true });
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await relay.stop();
    expect(await failedCount(source)).toBe(0);
    expect((await registry.history(subject)).length).toBe(2);
    const records = await readTopics(kafka, [topicFor(source)], (r) => r.length >= 20);
    expect(records).toHaveLength(20);
  });

  it('makes a topic deleted under it again and publishes the rows that came after', async () => {
    const source = uniqueName('relay-deleted-topic');
    await append(events(source, 10, 2));
    const relay = await startRelay();
    await waitUntil(async () => (await pendingCount(source)) === 0);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await admin.deleteTopics({ topics: [topicFor(source)] });
      await waitUntil(async () => !(await admin.listTopics()).includes(topicFor(source)));
      await append(events(source, 20, 2).slice(10));
      await waitUntil(async () => (await pendingCount(source)) === 0, 60_000);
      await relay.stop();
      const records = await readTopics(kafka, [topicFor(source)], (r) => r.length >= 10);
      expect(records.map((r) => r.headers[HEADER.eventId]).sort()).toEqual(
        Array.from({ length: 10 }, (_, i) => `${source}-${i + 10}`).sort(),
      );
      const [metadata] = (await admin.fetchTopicMetadata({ topics: [topicFor(source)] })).topics;
      expect(metadata!.partitions).toHaveLength(6);
    } finally {
      await admin.disconnect();
    }
  }, 120_000);

  it('deletes published rows past retention in batches and keeps unpublished ones', async () => {
    const source = uniqueName('relay-retention');
    await append(events(source, 50, 5));
    const relay = await startRelay({ retentionMs: 1 });
    await waitUntil(async () => (await pendingCount(source)) === 0);
    await append(events(uniqueName('relay-retention-later'), 5, 1));
    await relay.stop();
    await new Promise((r) => setTimeout(r, 10));
    const deleted = await relay.deletePublished();
    expect(deleted).toBeGreaterThanOrEqual(50);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM outbox WHERE source = $1', [source]);
    expect(rows[0].n).toBe(0);
    const raw = await pool.query('SELECT count(*)::int AS n FROM raw_events WHERE source = $1', [source]);
    expect(raw.rows[0].n).toBe(50);
  });
});

async function failedCount(source: string): Promise<number> {
  const { rows } = await pool.query(
    'SELECT count(*)::int AS n FROM outbox WHERE source = $1 AND failed_at IS NOT NULL',
    [source],
  );
  return rows[0].n;
}
