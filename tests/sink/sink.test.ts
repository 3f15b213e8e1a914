import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import type { Kafka } from 'kafkajs';
import { afterAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, DLQ_TOPIC, HEADER } from '../../libs/kafka/index.ts';
import { LocalDirStorage } from '../../libs/lake/storage.ts';
import { type DlqRecord, readDlq, replayDlq } from '../../services/sink/dlq.ts';
import { isClean, verifyOutput } from '../../services/sink/verify.ts';
import { testKafka, testPool, uniqueName } from '../helpers/real-stack.ts';
import { startSink, TestSource, tempLake, waitForCommitted } from './stack.ts';

const pool = testPool(10);
const kafka = testKafka();

afterAll(async () => {
  await pool.end();
});

function filesUnder(root: string, dir: string): string[] {
  const base = path.join(root, dir);
  if (!fs.existsSync(base)) return [];
  return (fs.readdirSync(base, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(base, f)).isFile())
    .map((f) => path.join(dir, f))
    .sort();
}

function digest(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of [...filesUnder(root, 'bronze'), ...filesUnder(root, 'silver')]) {
    out[f] = createHash('sha256')
      .update(fs.readFileSync(path.join(root, f)))
      .digest('hex');
  }
  return out;
}

function bronzeLines(root: string): Array<Record<string, unknown>> {
  return filesUnder(root, 'bronze').flatMap((f) =>
    fs
      .readFileSync(path.join(root, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
  );
}

/**
 * Silver rows read with hyparquet. Entity datasets are written by DuckDB, so hyparquet is their
 * independent reader; event datasets are written by hyparquet-writer, so DuckDB reads them too.
 */
async function silverRows(root: string, dataset: string): Promise<Array<Record<string, unknown>>> {
  const rows: Array<Record<string, unknown>> = [];
  for (const f of filesUnder(root, `silver/${dataset}`).filter((f) => f.endsWith('.parquet'))) {
    const file = await asyncBufferFromFile(path.join(root, f));
    const date = /date=([0-9-]+)/.exec(f)![1];
    for (const row of await parquetReadObjects({ file })) rows.push({ ...row, date });
  }
  return rows;
}

async function counter(metrics: { getSingleMetricAsString: (n: string) => Promise<string> }, name: string) {
  const text = await metrics.getSingleMetricAsString(name);
  return text
    .split('\n')
    .filter((l) => l.startsWith(name))
    .reduce((sum, l) => sum + Number(l.split(' ').pop()), 0);
}

describe('sink', () => {
  it('writes each event once to bronze (JSONL, seed-004 layout) and silver (Parquet), and verify agrees', async () => {
    const src = await new TestSource(kafka, pool).setup();
    const events = await src.accept(src.events(400));
    await src.publish(events);
    const lake = tempLake();
    const running = await startSink(kafka, pool, lake, [src.topic]);
    try {
      await waitForCommitted(kafka, running.groupId, [src.topic]);
      // The sink's three consumers are three members of its group, sharing the three partitions.
      const admin = kafka.admin();
      await admin.connect();
      const { groups } = await admin.describeGroups([running.groupId]).finally(() => admin.disconnect());
      expect(groups[0]?.members).toHaveLength(3);
    } finally {
      await running.stop();
    }

    const bronze = filesUnder(lake, 'bronze');
    const layout =
      /^bronze\/source=[^/]+\/event_type=order\.(created|paid)\/event_date=2026-03-0[12]\/ingest_date=\d{4}-\d{2}-\d{2}\/hour=\d{2}\/conveyor\.[^+]+\+[0-2]\+\d{20}\.jsonl$/;
    for (const f of bronze) expect(f.replace(/%2E/g, '.')).toMatch(layout);
    const lines = bronzeLines(lake);
    expect(lines).toHaveLength(400);
    expect(new Set(lines.map((l) => l.event_id)).size).toBe(400);
    const first = lines.find((l) => l.event_id === `${src.source}-7`)!;
    expect(first.payload).toEqual({ seq: 7, amount: 21, note: 'é 7' });
    expect(first.event_type).toBe('order.created');
    expect(first.lineage).toEqual({ request: 'req-7' });
    expect((first.kafka as { topic: string }).topic).toBe(src.topic);

    const silver = await silverRows(lake, encodeURIComponent(src.source).replace(/\./g, '%2E'));
    expect(silver).toHaveLength(400);
    expect(new Set(silver.map((r) => r.event_id)).size).toBe(400);
    const row = silver.find((r) => r.event_id === `${src.source}-8`)!;
    expect(row.date).toBe('2026-03-01');
    expect(JSON.parse(row.payload as string)).toEqual({ seq: 8, amount: 24, note: 'é 8' });
    expect((row.event_time as Date).toISOString()).toBe('2026-03-01T10:00:08.000Z');

    // DuckDB, the engine analysts would point at the lake (and a reader independent of the event
    // files' writer), reads the same partitions and the same values.
    const duck = await (await DuckDBInstance.create(':memory:')).connect();
    const files = `read_parquet('${lake}/silver/*/date=*/*.parquet', hive_partitioning = true)`;
    const counted = await duck.runAndReadAll(`SELECT count(DISTINCT event_id)::INTEGER FROM ${files}`);
    expect(counted.getRowsJS()[0]![0]).toBe(400);
    const read = await duck.runAndReadAll(
      `SELECT payload, strftime(event_time, '%Y-%m-%dT%H:%M:%S.%g'), kafka_topic, kafka_offset::VARCHAR, "date"::VARCHAR
       FROM ${files} WHERE event_id = '${src.source}-8'`,
    );
    const [payload, eventTime, topic, offset, date] = read.getRowsJS()[0]! as string[];
    expect(JSON.parse(payload!)).toEqual({ seq: 8, amount: 24, note: 'é 8' });
    expect([eventTime, topic, date]).toEqual(['2026-03-01T10:00:08.000', src.topic, '2026-03-01']);
    expect(offset).toBe(String(row.kafka_offset));
    duck.closeSync();

    const reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [src.source] });
    expect(reports.map((r) => [r.layer, r.missing, r.duplicated, r.extra])).toEqual([
      ['bronze', 0, 0, 0],
      ['silver', 0, 0, 0],
    ]);
  });

  it('with a topic pattern, also consumes topics created after it started (a new source)', async () => {
    const prefix = uniqueName('late');
    const pattern = new RegExp(`^conveyor\\.${prefix}-`);
    const lake = tempLake();
    // Started before any topic matches: it waits, then finds each new topic and keeps the earlier ones.
    const running = await startSink(kafka, pool, lake, pattern, { topicRefreshMs: 300 });
    try {
      const first = await new TestSource(kafka, pool, prefix).setup(2);
      await first.publish(await first.accept(first.events(30)));
      await waitForCommitted(kafka, running.groupId, [first.topic]);
      const second = await new TestSource(kafka, pool, prefix).setup(2);
      await second.publish(await second.accept(second.events(20)));
      await first.publish(await first.accept(first.events(10, { from: 30 })));
      await waitForCommitted(kafka, running.groupId, [first.topic, second.topic]);
      const reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [first.source, second.source] });
      expect(reports.map((r) => [r.layer, r.accepted, r.missing, r.duplicated, r.extra])).toEqual([
        ['bronze', 60, 0, 0, 0],
        ['silver', 60, 0, 0, 0],
      ]);
    } finally {
      await running.stop();
    }
  });

  it('after a re-subscription that fails (its consumers stopped), tries again and consumes every topic', async () => {
    const prefix = uniqueName('resub');
    const pattern = new RegExp(`^conveyor\\.${prefix}-`);
    // The real client, with a fault put in: the next subscribe fails, as when kafkajs cannot refresh
    // metadata during a broker blip.
    let failNextSubscribe = false;
    const flaky = Object.create(kafka) as Kafka;
    flaky.consumer = (config) => {
      const consumer = kafka.consumer(config);
      const subscribe = consumer.subscribe.bind(consumer);
      consumer.subscribe = async (subscription) => {
        if (failNextSubscribe) {
          failNextSubscribe = false;
          throw new Error('injected: metadata refresh failed');
        }
        return subscribe(subscription);
      };
      return consumer;
    };
    const lake = tempLake();
    const first = await new TestSource(kafka, pool, prefix).setup(1);
    await first.publish(await first.accept(first.events(10)));
    const running = await startSink(flaky, pool, lake, pattern, { topicRefreshMs: 300 });
    try {
      await waitForCommitted(kafka, running.groupId, [first.topic]);
      failNextSubscribe = true;
      const second = await new TestSource(kafka, pool, prefix).setup(1);
      await second.publish(await second.accept(second.events(10)));
      await first.publish(await first.accept(first.events(5, { from: 10 })));
      await waitForCommitted(kafka, running.groupId, [first.topic, second.topic]);
      expect(failNextSubscribe).toBe(false);
      expect(running.sink.isRunning).toBe(true);
      const reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [first.source, second.source] });
      expect(reports.map((r) => [r.layer, r.accepted, r.missing, r.duplicated, r.extra])).toEqual([
        ['bronze', 25, 0, 0, 0],
        ['silver', 25, 0, 0, 0],
      ]);
    } finally {
      await running.stop();
    }
  });

  it('collapses duplicates (re-publications, repeats within a batch) and replaying from offset 0 changes nothing', async () => {
    const src = await new TestSource(kafka, pool).setup();
    const events = await src.accept(src.events(300));
    await src.publish(events);
    // The relay re-publishing after a crash: the same event ids at later offsets.
    await src.publish(events.slice(100, 250));
    await src.publish([events[5]!, events[5]!, events[6]!]);
    const lake = tempLake();
    const running = await startSink(kafka, pool, lake, [src.topic]);
    try {
      await waitForCommitted(kafka, running.groupId, [src.topic]);
      expect(await counter(running.metrics, 'conveyor_sink_duplicates_dropped_total')).toBe(153);
    } finally {
      await running.stop();
    }
    const lines = bronzeLines(lake);
    expect(lines).toHaveLength(300);
    expect(new Set(lines.map((l) => l.event_id)).size).toBe(300);
    const before = digest(lake);

    // A new consumer group reads the whole topic again from offset 0: same files, same bytes.
    const again = await startSink(kafka, pool, lake, [src.topic]);
    try {
      await waitForCommitted(kafka, again.groupId, [src.topic]);
    } finally {
      await again.stop();
    }
    expect(digest(lake)).toEqual(before);
    const reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [src.source] });
    expect(isClean(reports)).toBe(true);
  });

  it('a replay cut into other batches (another fetch size, a replay from offset 0) leaves one copy of each event', async () => {
    const src = await new TestSource(kafka, pool).setup(1);
    const events = await src.accept(src.events(400));
    // Small producer batches: a fetch can end after any ten records.
    for (let i = 0; i < events.length; i += 10) await src.publish(events.slice(i, i + 10));
    const lake = tempLake();
    // Files rotate every 7 records, so one large batch writes several files per folder, at offsets
    // where no ten-record batch starts.
    const rotation = { maxRecords: 7, maxBytes: 64 << 20, maxSpanMs: 3600_000 };
    const first = await startSink(kafka, pool, lake, [src.topic], { rotation, maxBytesPerPartition: 1 << 20 });
    try {
      await waitForCommitted(kafka, first.groupId, [src.topic]);
    } finally {
      await first.stop();
    }
    // Nothing committed (a crash before the commit, as a new group has it) and batches a few records
    // long: the rotated files of the first run start at offsets no replay batch starts a file at.
    const replay = await startSink(kafka, pool, lake, [src.topic], { rotation, maxBytesPerPartition: 4096 });
    try {
      await waitForCommitted(kafka, replay.groupId, [src.topic]);
    } finally {
      await replay.stop();
    }
    const clean = [
      ['bronze', 0, 0, 0],
      ['silver', 0, 0, 0],
    ];
    const lines = bronzeLines(lake);
    expect(new Set(lines.map((l) => l.event_id)).size).toBe(400);
    expect(lines).toHaveLength(400);
    let reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [src.source] });
    expect(reports.map((r) => [r.layer, r.missing, r.duplicated, r.extra])).toEqual(clean);

    // And back to one large batch without rotation: its files replace all the small ones.
    const whole = await startSink(kafka, pool, lake, [src.topic], { maxBytesPerPartition: 1 << 20 });
    try {
      await waitForCommitted(kafka, whole.groupId, [src.topic]);
    } finally {
      await whole.stop();
    }
    expect(bronzeLines(lake)).toHaveLength(400);
    reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [src.source] });
    expect(reports.map((r) => [r.layer, r.missing, r.duplicated, r.extra])).toEqual(clean);
  });

  it('a running sink expires the dedupe claims past the retention soon after it starts', async () => {
    const src = await new TestSource(kafka, pool).setup(1);
    await src.publish(await src.accept(src.events(5)));
    // More than one expiry statement's worth (10,000), eight days old; the retention is 7 days.
    await pool.query(
      `INSERT INTO sink_claims (source, event_id, topic, kafka_partition, kafka_offset, claimed_at)
       SELECT $1, 'expired-' || n, $2, 0, 1000000 + n, now() - interval '8 days' FROM generate_series(1, 12000) n`,
      [src.source, src.topic],
    );
    const claims = async (pattern: string) =>
      (
        await pool.query<{ n: number }>(
          'SELECT count(*)::integer AS n FROM sink_claims WHERE source = $1 AND event_id LIKE $2',
          [src.source, pattern],
        )
      ).rows[0]!.n;
    const running = await startSink(kafka, pool, tempLake(), [src.topic], { expiryFirstMs: 200 });
    try {
      await waitForCommitted(kafka, running.groupId, [src.topic]);
      const deadline = Date.now() + 30_000;
      while ((await claims('expired-%')) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    } finally {
      await running.stop();
    }
    expect(await claims('expired-%')).toBe(0);
    // The claims of the events just written are kept.
    expect(await claims(`${src.source}-%`)).toBe(5);
  });

  it('sends poison records to the DLQ with reason headers while the rest flow', async () => {
    const src = await new TestSource(kafka, pool).setup(1);
    const events = await src.accept(src.events(20));
    const good = await Promise.all(events.map((e) => src.encode(e)));
    const poison = [
      { key: 'p1', value: Buffer.from('{"not":"avro"}') },
      { key: 'p2', value: await src.encode(events[0]!, { event_id: '' }) },
      { key: 'p3', value: await src.encode(events[0]!, { event_time: 253402300800000 }) },
      { key: 'p4', value: await src.encode(events[0]!, { payload: 'not json' }) },
      { key: 'p5', value: Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), good[0]!.subarray(5)]) },
    ];
    await src.send([
      ...good.slice(0, 10).map((value, i) => ({ key: events[i]!.entityKey, value })),
      ...poison,
      ...good.slice(10).map((value, i) => ({ key: events[i + 10]!.entityKey, value })),
    ]);
    const lake = tempLake();
    const running = await startSink(kafka, pool, lake, [src.topic]);
    try {
      await waitForCommitted(kafka, running.groupId, [src.topic]);
      expect(await counter(running.metrics, 'conveyor_sink_dlq_total')).toBe(5);
    } finally {
      await running.stop();
    }
    expect(bronzeLines(lake)).toHaveLength(20);

    const dlq: DlqRecord[] = [];
    await readDlq(kafka, (records) => {
      dlq.push(...records);
    });
    const mine = dlq
      .filter((r) => r.headers[DLQ_HEADER.originalTopic] === src.topic)
      .sort((a, b) => Number(a.headers[DLQ_HEADER.originalOffset]) - Number(b.headers[DLQ_HEADER.originalOffset]));
    expect(mine.map((r) => [r.key?.toString(), r.headers[DLQ_HEADER.reason]])).toEqual([
      ['p1', 'not_wire_format'],
      ['p2', 'missing_event_id'],
      ['p3', 'bad_event_time'],
      ['p4', 'bad_payload'],
      ['p5', 'unknown_schema'],
    ]);
    for (const r of mine) {
      expect(r.headers[DLQ_HEADER.stage]).toBe('sink');
      expect(r.headers[DLQ_HEADER.originalPartition]).toBe('0');
      expect(Number(r.headers[DLQ_HEADER.originalOffset])).toBeGreaterThanOrEqual(10);
      expect(r.headers[DLQ_HEADER.errorClass]).toBeTruthy();
      expect(Date.parse(r.headers[DLQ_HEADER.failedAt]!)).not.toBeNaN();
      expect(r.headers[DLQ_HEADER.message]).toBeTruthy();
    }
    expect(mine[2]!.headers[DLQ_HEADER.message]).toContain('event_time');
  });

  it('dlq replay re-publishes with key, headers and event id, and a second replay writes nothing new', async () => {
    const src = await new TestSource(kafka, pool).setup(1);
    const [event] = await src.accept(src.events(1, { from: 900 }));
    // A record the sink dead-lettered during a registry outage, as it sits on the DLQ.
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({
      topic: DLQ_TOPIC,
      messages: [
        {
          key: event!.entityKey,
          value: await src.encode(event!),
          headers: {
            [HEADER.eventId]: event!.eventId,
            [DLQ_HEADER.reason]: 'unknown_schema',
            [DLQ_HEADER.stage]: 'sink',
            [DLQ_HEADER.originalTopic]: src.topic,
            [DLQ_HEADER.originalPartition]: '0',
            [DLQ_HEADER.originalOffset]: '0',
          },
        },
      ],
    });
    await producer.disconnect();

    const dry = await replayDlq(kafka, pool, { reasons: ['bad_payload'], topics: [src.topic] }, { dryRun: true });
    expect([dry.planned.size, dry.sent]).toEqual([0, 0]);
    const filter = { reasons: ['unknown_schema'], topics: [src.topic] };
    expect((await replayDlq(kafka, pool, filter, { dryRun: true })).planned).toEqual(new Map([[src.topic, 1]]));
    expect((await replayDlq(kafka, pool, filter)).sent).toBe(1);
    expect((await replayDlq(kafka, pool, filter)).sent).toBe(1);

    const lake = tempLake();
    const running = await startSink(kafka, pool, lake, [src.topic]);
    try {
      await waitForCommitted(kafka, running.groupId, [src.topic]);
    } finally {
      await running.stop();
    }
    const lines = bronzeLines(lake);
    expect(lines.map((l) => [l.event_id, (l.kafka as { offset: number }).offset])).toEqual([[event!.eventId, 0]]);
    expect(isClean(await verifyOutput(pool, new LocalDirStorage(lake), { sources: [src.source] }))).toBe(true);
  });

  it('merges entity versions: the latest updated_at wins whatever the arrival order, ties by event id', async () => {
    const src = await new TestSource(kafka, pool, 'sinkmerge').setup(2);
    const base = src.events(1)[0]!;
    const version = (id: string, key: string, updatedAt: string, day: number, v: number) => ({
      ...base,
      eventId: `${src.source}-${id}`,
      entityKey: key,
      eventTime: new Date(Date.UTC(2026, 2, day, 12)),
      payload: { v, updated_at: updatedAt },
    });
    const first = await src.accept([
      version('a1', 'cust-a', '2026-03-01T10:00:00Z', 1, 1),
      version('a3', 'cust-a', '2026-03-03T10:00:00Z', 3, 3),
      version('b1', 'cust-b', '2026-03-01T10:00:00Z', 1, 1),
      version('c1', 'cust-c', '2026-03-02T10:00:00Z', 2, 1),
      version('c2', 'cust-c', '2026-03-02T10:00:00Z', 2, 2),
    ]);
    await src.publish(first);
    const lake = tempLake();
    const entitySources = new Set([src.source]);
    let running = await startSink(kafka, pool, lake, [src.topic], { entitySources });
    await waitForCommitted(kafka, running.groupId, [src.topic]);
    await running.stop();

    // Later: an older version of a arrives late, b gets a newer version dated another day.
    const late = await src.accept([
      version('a2', 'cust-a', '2026-03-02T10:00:00Z', 2, 2),
      version('b2', 'cust-b', '2026-03-04T10:00:00Z', 4, 2),
    ]);
    await src.publish(late);
    running = await startSink(kafka, pool, lake, [src.topic], { entitySources, groupId: running.groupId });
    await waitForCommitted(kafka, running.groupId, [src.topic]);
    await running.stop();

    const dataset = `${encodeURIComponent(src.source)}_latest`;
    const rows = await silverRows(lake, dataset);
    const latest = Object.fromEntries(
      rows.map((r) => [r.entity_key, [r.event_id, (JSON.parse(r.payload as string) as { v: number }).v, r.date]]),
    );
    expect(rows).toHaveLength(3);
    expect(latest).toEqual({
      'cust-a': [`${src.source}-a3`, 3, '2026-03-03'],
      'cust-b': [`${src.source}-b2`, 2, '2026-03-04'],
      // Same updated_at: the greater event id wins, deterministically.
      'cust-c': [`${src.source}-c2`, 2, '2026-03-02'],
    });
    // b moved from 2026-03-01 to 2026-03-04: the emptied partition is gone, not left stale.
    expect(
      filesUnder(lake, `silver/${dataset}`)
        .map((f) => /date=([0-9-]+)/.exec(f)![1])
        .sort(),
    ).toEqual(['2026-03-02', '2026-03-03', '2026-03-04']);
  });
});
