/**
 * npm run bench:verify — `conveyor verify` over a large lake: BENCH_VERIFY_EVENTS (default 2,000,000)
 * accepted events in a scratch database and the same ids in bronze JSON lines (~600 bytes each) and
 * silver Parquet, with a few known faults (ids left out, repeated, never accepted) that verify must
 * find exactly. Reports its time and peak RSS and, in the same run, the ceiling: reading the same ids
 * bare (a Postgres cursor doing nothing with the rows, DuckDB counting the files' ids). Prints a
 * table, then one JSON line.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { setting } from '../../libs/config/index.ts';
import { createPool, migrate, recreateDatabase } from '../../libs/db/index.ts';
import type { LakeEvent } from '../../libs/lake/event.ts';
import { encodeEvents } from '../../libs/lake/silver.ts';

const EVENTS = Number(process.env.BENCH_VERIFY_EVENTS ?? 2_000_000);
if (!Number.isInteger(EVENTS) || EVENTS < 1000)
  throw new Error(`BENCH_VERIFY_EVENTS must be an integer of at least 1000, got ${process.env.BENCH_VERIFY_EVENTS}`);
const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor');
const PER_FILE = 100_000;
const SOURCE = 'bench';
const id = (n: number) => `${SOURCE}-${n}`;
// The faults verify must find: ids 1-3 are accepted but left out of the lake; 4 and 5 are written
// twice; one id is in the lake but was never accepted.
const MISSING = [1, 2, 3];
const REPEATED = [4, 5];
const EXTRA = EVENTS + 1;

const dbUrl = new URL(setting('DATABASE_URL'));
dbUrl.pathname = '/conveyor_bench_verify';
const url = await recreateDatabase(dbUrl.toString(), 'conveyor_bench_verify');
await migrate({ url });
const pool = createPool({ url, max: 1 });
const seconds = (from: number) => (performance.now() - from) / 1000;

process.stderr.write(`accepting ${EVENTS.toLocaleString('en-US')} events in Postgres...\n`);
await pool.query(
  `INSERT INTO raw_events (source, event_id, event_type, entity_key, event_time, payload)
   SELECT $1, $1 || '-' || n, 'order.created', 'order-' || (n % 10000), now(), '{}' FROM generate_series(1, $2) n`,
  [SOURCE, EVENTS],
);

process.stderr.write('writing the lake (bronze JSON lines, silver Parquet)...\n');
const lake = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-bench-verify-'));
const bronzeDir = path.join(
  lake,
  `bronze/source=${SOURCE}/event_type=order.created/event_date=2026-03-01/ingest_date=2026-03-01/hour=12`,
);
const silverDir = path.join(lake, `silver/${SOURCE}/date=2026-03-01`);
fs.mkdirSync(bronzeDir, { recursive: true });
fs.mkdirSync(silverDir, { recursive: true });
const lakeIds = [...REPEATED, EXTRA];
for (let n = 1; n <= EVENTS; n++) if (!MISSING.includes(n)) lakeIds.push(n);
const filler = 'x'.repeat(400);
const time = Date.UTC(2026, 2, 1, 12);
for (let start = 0; start < lakeIds.length; start += PER_FILE) {
  const events: LakeEvent[] = lakeIds.slice(start, start + PER_FILE).map((n, i) => ({
    eventId: id(n),
    source: SOURCE,
    eventType: 'order.created',
    entityKey: `order-${n % 10000}`,
    eventTime: time,
    ingestedAt: time,
    updatedAt: time,
    payload: `{"seq":${n},"filler":"${filler}"}`,
    lineage: {},
    topic: `conveyor.${SOURCE}`,
    partition: 0,
    offset: String(start + i),
  }));
  const name = `conveyor.${SOURCE}+0+${String(start).padStart(20, '0')}`;
  const lines = events.map(
    (e) =>
      `{"event_id":"${e.eventId}","source":"${SOURCE}","event_type":"${e.eventType}","entity_key":"${e.entityKey}","event_time":"2026-03-01T12:00:00.000Z","ingested_at":"2026-03-01T12:00:00.000Z","updated_at":"2026-03-01T12:00:00.000Z","payload":${e.payload},"lineage":{},"kafka":{"topic":"${e.topic}","partition":0,"offset":${e.offset}}}\n`,
  );
  fs.writeFileSync(path.join(bronzeDir, `${name}.jsonl`), lines.join(''));
  fs.writeFileSync(path.join(silverDir, `part-${name}.parquet`), encodeEvents(events));
}
const files = fs.readdirSync(bronzeDir).length;
const folderMb = (dir: string) =>
  fs.readdirSync(dir).reduce((sum, f) => sum + fs.statSync(path.join(dir, f)).size, 0) / 1e6;
const lakeMb = folderMb(bronzeDir) + folderMb(silverDir);

/** The ceiling: the same ids read and thrown away, from Postgres and from the lake's files. */
async function measureBareReads(): Promise<{ postgres: number; lake: number }> {
  let started = performance.now();
  const client = await pool.connect();
  try {
    await client.query('BEGIN READ ONLY');
    await client.query('DECLARE ids NO SCROLL CURSOR FOR SELECT source, event_id FROM raw_events');
    while ((await client.query('FETCH 50000 FROM ids')).rows.length === 50000);
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  const postgres = seconds(started);
  started = performance.now();
  const instance = await DuckDBInstance.create(':memory:', { memory_limit: '512MB' });
  const duck = await instance.connect();
  try {
    await duck.run(`SELECT count(*) FROM read_json('${bronzeDir}/*.jsonl', format = 'newline_delimited',
      columns = {source: 'VARCHAR', event_id: 'VARCHAR'})`);
    await duck.run(`SELECT count(*) FROM read_parquet('${silverDir}/*.parquet')`);
  } finally {
    duck.closeSync();
    instance.closeSync();
  }
  return { postgres, lake: seconds(started) };
}

interface VerifyRun {
  seconds: number;
  rssMb: number;
  reports: Array<{ layer: string; accepted: number; missing: number; duplicated: number; extra: number }>;
}

/** `conveyor verify --json` as users run it, timed, its peak RSS sampled from /proc. */
async function measureVerify(): Promise<VerifyRun> {
  const started = performance.now();
  const child = spawn(BIN, ['verify', '--json', '--output', lake], {
    env: { ...process.env, DATABASE_URL: url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let peakKb = 0;
  const sampler = setInterval(() => {
    try {
      const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
      peakKb = Math.max(peakKb, Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0));
    } catch {
      // Exited: the last reading stands.
    }
  }, 100);
  let stdout = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  clearInterval(sampler);
  // Exit 1 is expected: the lake has faults.
  if (code !== 1) throw new Error(`conveyor verify exited with ${code}; expected 1 (the lake has faults)`);
  const reports = stdout
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as VerifyRun['reports'][number]);
  return { seconds: seconds(started), rssMb: Math.round((peakKb * 1024) / 1e6), reports };
}

const bare = await measureBareReads();
const run = await measureVerify();
await pool.end();
fs.rmSync(lake, { recursive: true, force: true });

const expected = { missing: MISSING.length, duplicated: REPEATED.length, extra: 1 };
for (const r of run.reports) {
  const found = { missing: r.missing, duplicated: r.duplicated, extra: r.extra };
  if (JSON.stringify(found) !== JSON.stringify(expected))
    throw new Error(`verify found ${JSON.stringify(found)} in ${r.layer}; the lake has ${JSON.stringify(expected)}`);
}
const ceiling = bare.postgres + bare.lake;
const rows: Array<[string, string | number]> = [
  ['accepted events', EVENTS],
  ['bronze + silver files', files * 2],
  ['lake MB (bronze + silver)', Number(lakeMb.toFixed(1))],
  ['verify s (both layers, faults found exactly)', Number(run.seconds.toFixed(1))],
  ['verify events/s', Math.round(EVENTS / run.seconds)],
  ['verify peak RSS MB', run.rssMb],
  ['ceiling s: bare Postgres cursor read of the ids', Number(bare.postgres.toFixed(1))],
  ['ceiling s: bare DuckDB read of the lake ids', Number(bare.lake.toFixed(1))],
  ['ratio (ceiling s / verify s)', Number((ceiling / run.seconds).toFixed(2))],
];
for (const [label, value] of rows) console.log(`${label.padEnd(48)} ${String(value).padStart(10)}`);
console.log(
  JSON.stringify({
    bench: 'verify',
    events: EVENTS,
    seconds: Number(run.seconds.toFixed(1)),
    events_per_s: Math.round(EVENTS / run.seconds),
    rss_mb: run.rssMb,
    ceiling_seconds: Number(ceiling.toFixed(1)),
    ratio: Number((ceiling / run.seconds).toFixed(2)),
    found: expected,
  }),
);
