/**
 * npm run bench:relay — the relay against its ceiling, in one run on this machine:
 *   1. 100,000 events of ~1 KB already in the outbox → published by `conveyor relay` (a child process);
 *   2. commit-to-ack latency at a fixed 1,000 events/s;
 *   3. the ceiling: a bare kafkajs producer sending the same records (Avro envelope, key, headers)
 *      with the same settings (idempotent, transactional, acks=all, same batch size).
 * Prints a table, then one JSON line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { logLevel } from 'kafkajs';
import { intSetting, setting } from '../../libs/config/index.ts';
import { createPool, recreateDatabase, withTransaction } from '../../libs/db/index.ts';
import { createKafka, ensureTopics, HEADER } from '../../libs/kafka/index.ts';
import { appendEvents, type NewEvent } from '../../libs/outbox/index.ts';
import { contractFor } from '../../libs/registry/contracts.ts';
import { encodeRow } from '../../services/relay/encode.ts';
import { produceRequests, TRANSACTION_RETRY } from '../../services/relay/relay.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 100_000);
const RATE_EVENTS_PER_S = 1000;
const RATE_SECONDS = Number(process.env.BENCH_RATE_SECONDS ?? 15);
const BATCH = intSetting('RELAY_BATCH_SIZE', process.env, 1);
const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor');
const run = Math.random().toString(36).slice(2, 8);

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

function freshDatabase(): Promise<string> {
  return recreateDatabase(setting('DATABASE_URL'), 'conveyor_bench_relay');
}

/** ~1 KB payload; the varying part keeps Postgres and Kafka from compressing it away. */
function payloadOf(i: number): Record<string, unknown> {
  return { seq: i, account: `acct-${i % 5000}`, amount: i * 7, note: `${i}`.padEnd(900, 'abcdefghij') };
}

function event(source: string, i: number): NewEvent {
  return {
    source,
    eventId: `e-${i}`,
    eventType: 'payment.settled',
    entityKey: `acct-${i % 5000}`,
    eventTime: new Date(Date.UTC(2026, 10, 1) + i),
    payload: payloadOf(i),
  };
}

function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

async function main(): Promise<void> {
  const databaseUrl = await freshDatabase();
  const pool = createPool({ url: databaseUrl, max: 4 });
  const source = `bench-relay-${run}`;

  log(`loading ${EVENTS} events of ~1 KB into the outbox ...`);
  for (let i = 0; i < EVENTS; i += 5000) {
    const chunk = Array.from({ length: Math.min(5000, EVENTS - i) }, (_, j) => event(source, i + j));
    await withTransaction(pool, (c) => appendEvents(c, chunk));
  }
  const { rows: sizeRows } = await pool.query<{ bytes: string }>(
    'SELECT sum(octet_length(payload::text))::bigint AS bytes FROM raw_events WHERE source = $1',
    [source],
  );
  const payloadBytes = Number(sizeRows[0]!.bytes);

  log('publishing with `conveyor relay` ...');
  const relay: ChildProcess = spawn(BIN, ['relay'], {
    env: { ...process.env, DATABASE_URL: databaseUrl, RELAY_PORT: '0', RELAY_AUTO_REGISTER: 'true', LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const published = async () =>
    Number(
      (await pool.query<{ n: string }>('SELECT count(*) AS n FROM outbox WHERE published_at IS NOT NULL')).rows[0]!.n,
    );
  // Through the pending index: a count over the whole outbox every few ms would take CPU from the relay.
  const anyPending = async () =>
    (
      await pool.query<{ pending: boolean }>(
        'SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL AND failed_at IS NULL) AS pending',
      )
    ).rows[0]!.pending;
  while (await anyPending()) await new Promise((r) => setTimeout(r, 100));
  const { rows: span } = await pool.query<{ seconds: number }>(
    'SELECT extract(epoch FROM max(published_at) - min(published_at))::float8 AS seconds FROM outbox',
  );
  // From the first row marked published to the last: relay start-up (tsx, Kafka connect) is not counted.
  const drainSeconds = span[0]!.seconds;
  const eventsPerS = EVENTS / drainSeconds;

  log(`latency at ${RATE_EVENTS_PER_S} events/s for ${RATE_SECONDS}s ...`);
  const tickMs = 10;
  const perTick = (RATE_EVENTS_PER_S * tickMs) / 1000;
  const start = performance.now();
  let sent = 0;
  for (let tick = 0; sent < RATE_EVENTS_PER_S * RATE_SECONDS; tick++) {
    const due = start + tick * tickMs;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const chunk = Array.from({ length: perTick }, (_, j) => event(source, EVENTS + sent + j));
    await withTransaction(pool, (c) => appendEvents(c, chunk));
    sent += perTick;
  }
  while ((await published()) < EVENTS + sent) await new Promise((r) => setTimeout(r, 50));
  const { rows: lat } = await pool.query<{ ms: number }>(
    `SELECT extract(epoch FROM published_at - created_at)::float8 * 1000 AS ms FROM outbox
     WHERE id > (SELECT min(id) + $1 - 1 FROM outbox) ORDER BY 1`,
    [EVENTS],
  );
  const latencies = lat.map((r) => r.ms);
  const rssMb = peakRssMb(relay.pid!);
  relay.kill('SIGTERM');
  await new Promise((r) => relay.once('exit', r));
  await pool.end();

  log('ceiling: bare kafkajs producer, same bytes and settings ...');
  const kafka = createKafka({ clientId: 'bench-ceiling', logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topic = `bench-ceiling-${run}`;
  await ensureTopics(admin, [{ topic, numPartitions: 6 }]);
  // The relay's records: the same Avro envelope (encoded before the clock starts) and the same four headers.
  const contract = contractFor(source);
  const values = Array.from({ length: EVENTS }, (_, i) => ({
    key: `acct-${i % 5000}`,
    value: encodeRow(
      {
        id: String(i + 1),
        topic,
        source,
        event_id: `e-${i}`,
        event_type: 'payment.settled',
        entity_key: `acct-${i % 5000}`,
        event_ms: Date.UTC(2026, 10, 1) + i,
        ingested_ms: Date.now(),
        created_ms: Date.now(),
        payload: JSON.stringify(payloadOf(i)),
        lineage: '{}',
      },
      contract,
      1,
    ),
    headers: {
      [HEADER.eventId]: `e-${i}`,
      [HEADER.source]: source,
      [HEADER.eventType]: 'payment.settled',
      [HEADER.outboxId]: String(i + 1),
    },
  }));
  const producer = kafka.producer({
    transactionalId: `bench-ceiling-${run}`,
    idempotent: true,
    maxInFlightRequests: 1,
    retry: TRANSACTION_RETRY,
  });
  await producer.connect();
  const ceilingStart = performance.now();
  for (let i = 0; i < EVENTS; i += BATCH) {
    const txn = await producer.transaction();
    // In the same produce requests as the relay's.
    for (const topicMessages of produceRequests([{ topic, messages: values.slice(i, i + BATCH) }])) {
      await txn.sendBatch({ topicMessages, acks: -1 });
    }
    await txn.commit();
  }
  const ceilingSeconds = (performance.now() - ceilingStart) / 1000;
  await producer.disconnect();
  await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
  await admin.disconnect();
  const ceilingPerS = EVENTS / ceilingSeconds;

  const result = {
    bench: 'relay',
    events: EVENTS,
    events_per_s: Math.round(eventsPerS),
    mb_per_s: Number((payloadBytes / drainSeconds / 1e6).toFixed(1)),
    ceiling_events_per_s: Math.round(ceilingPerS),
    ratio: Number((eventsPerS / ceilingPerS).toFixed(2)),
    p50_ms: Number(percentile(latencies, 0.5).toFixed(1)),
    p99_ms: Number(percentile(latencies, 0.99).toFixed(1)),
    rate_events_per_s: RATE_EVENTS_PER_S,
    batch_size: BATCH,
    rss_mb: rssMb,
  };
  const rows: Array<[string, string]> = [
    ['events published', String(EVENTS)],
    ['relay events/s', String(result.events_per_s)],
    ['relay MB/s (payload)', String(result.mb_per_s)],
    ['bare kafkajs producer events/s (ceiling)', String(result.ceiling_events_per_s)],
    ['relay / ceiling', String(result.ratio)],
    [`commit→ack p50 at ${RATE_EVENTS_PER_S}/s (ms)`, String(result.p50_ms)],
    [`commit→ack p99 at ${RATE_EVENTS_PER_S}/s (ms)`, String(result.p99_ms)],
    ['relay peak RSS (MB)', String(result.rss_mb)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\nrelay benchmark (${new Date().toISOString()})`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(width)}  ${v}`);
  console.log(JSON.stringify(result));
}

await main();
