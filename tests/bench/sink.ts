/**
 * npm run bench:sink — 200,000 events (~1 KB each) already on a topic → consumed, decoded, checked,
 * deduped and written (bronze JSONL + silver Parquet, fsynced, offsets committed). In the same run,
 * the ceiling: a bare kafkajs consumer group reading the same records. The sink runs as its own
 * `conveyor sink` process, whose peak RSS is reported. Prints a table, then one JSON line.
 *
 * BENCH_SINK_ROUNDS=N (default 1) measures the ceiling and the sink N times, alternating, each sink
 * round on a new database, group and lake, and reports medians: on a shared 2-core machine one run
 * varies by ±15%, more than most single changes are worth.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import avro from 'avsc';
import { intSetting, setting } from '../../libs/config/index.ts';
import { recreateDatabase } from '../../libs/db/index.ts';
import { createKafka, ensureTopics, HEADER } from '../../libs/kafka/index.ts';
import { DEFAULT_SCHEMAS_DIR } from '../../libs/registry/contracts.ts';
import { encodeWire, SchemaRegistryClient } from '../../libs/registry/index.ts';
import { uniqueName } from '../helpers/real-stack.ts';
import { waitForCommitted } from '../sink/stack.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 200_000);
const ROUNDS = Number(process.env.BENCH_SINK_ROUNDS ?? 1);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1)
  throw new Error(`BENCH_SINK_ROUNDS must be a positive integer, got ${process.env.BENCH_SINK_ROUNDS}`);
const PARTITIONS = 6;
const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor');
const CLI = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor.mjs');
/** The node flags the launcher gives `sink` (services/cli/bin/conveyor), each `--name=value`. */
const SINK_NODE_FLAGS = [...fs.readFileSync(BIN, 'utf8').matchAll(/flags="[^"]*?(--[a-z0-9-]+=\d+)"/g)].map(
  (m) => m[1]!,
);

const dbUrl = new URL(setting('DATABASE_URL'));
dbUrl.pathname = '/conveyor_bench_sink';

const kafka = createKafka({ clientId: 'bench-sink' });
const source = uniqueName('bench');
const topic = `conveyor.${source}`;
const admin = kafka.admin();
await admin.connect();
await ensureTopics(admin, [{ topic, numPartitions: PARTITIONS }]);

const envelope = JSON.parse(fs.readFileSync(path.join(DEFAULT_SCHEMAS_DIR, 'envelope.avsc'), 'utf8'));
const registry = new SchemaRegistryClient();
const schemaId = await registry.register(`${topic}-value`, envelope);
const type = avro.Type.forSchema(envelope);

process.stderr.write(`producing ${EVENTS} events to ${topic}...\n`);
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
const filler = 'x'.repeat(820);
const now = Date.now();
let valueBytes = 0;
for (let start = 0; start < EVENTS; start += 5000) {
  const messages = [];
  for (let i = start; i < Math.min(EVENTS, start + 5000); i++) {
    const eventId = `${source}-${i}`;
    const value = encodeWire(schemaId, type, {
      event_id: eventId,
      source,
      event_type: ['order.created', 'order.paid', 'order.shipped'][i % 3],
      entity_key: `order-${i % 10_000}`,
      event_time: Date.UTC(2026, 2, 1 + (i % 2), 12, 0, 0) + i,
      ingested_at: now,
      payload: JSON.stringify({ seq: i, amount: i % 997, filler }),
      lineage: { outbox_id: String(i) },
    });
    valueBytes += value.length;
    messages.push({ key: `order-${i % 10_000}`, value, headers: { [HEADER.eventId]: eventId } });
  }
  await producer.send({ topic, acks: -1, messages });
}
await producer.disconnect();

const fetchBytes = 4 * 1024 * 1024;

/**
 * Ceiling: a bare consumer group, same isolation and fetch size, doing nothing with the records.
 * Timed from its group join, like the sink, so neither figure counts start-up. Events/s.
 */
async function measureCeiling(): Promise<number> {
  const bare = kafka.consumer({
    groupId: uniqueName('bench-bare'),
    readUncommitted: false,
    maxBytesPerPartition: fetchBytes,
    maxBytes: fetchBytes * 4,
  });
  await bare.connect();
  await bare.subscribe({ topics: [topic], fromBeginning: true });
  let bareStart = 0;
  bare.on(bare.events.GROUP_JOIN, () => {
    bareStart = performance.now();
  });
  let seen = 0;
  await new Promise<void>((resolve) => {
    void bare.run({
      partitionsConsumedConcurrently: 3,
      eachBatch: async ({ batch }) => {
        seen += batch.messages.length;
        if (seen >= EVENTS) resolve();
      },
    });
  });
  const bareSeconds = (performance.now() - bareStart) / 1000;
  await bare.disconnect();
  return EVENTS / bareSeconds;
}

/** Clock ticks (1/100 s on Linux) of user + system time in a /proc stat file. */
const ticksOf = (statFile: string) => {
  const stat = fs.readFileSync(statFile, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
};
// CPU of this machine's other processes while the sink runs: Postgres (the dedupe's claims and the
// fencing land there) and the Kafka broker, when they run here, on the same cores.
const processTicks = (matches: (comm: string, cmdline: string) => boolean) =>
  fs
    .readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .reduce((sum, d) => {
      try {
        const comm = fs.readFileSync(`/proc/${d}/comm`, 'utf8');
        const cmdline = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8');
        return matches(comm, cmdline) ? sum + ticksOf(`/proc/${d}/stat`) : sum;
      } catch {
        return sum;
      }
    }, 0);
const postgresTicks = () => processTicks((comm) => comm.startsWith('postgres'));
const brokerTicks = () => processTicks((_, cmdline) => cmdline.includes('kafka.Kafka'));
/** The whole machine's busy and total ticks (/proc/stat): how saturated it was during the run. */
const machineTicks = () => {
  const [user, nice, system, idle, iowait, irq, softirq, steal] = fs
    .readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const busy = user! + nice! + system! + irq! + softirq! + steal!;
  return { busy, total: busy + idle! + iowait! };
};
const postgresLocal = ['127.0.0.1', 'localhost', '::1', '[::1]'].includes(dbUrl.hostname);

interface SinkRound {
  eventsPerS: number;
  seconds: number;
  rssMb: number;
  rssAtStartMb: number;
  startupS: number;
  cpuS: number;
  mainThreadCpuS: number;
  postgresCpuS: number | undefined;
  brokerCpuS: number | undefined;
  machineBusyPct: number;
  /** Group joins its members logged: one each, plus one each per rebalance (a batch may be redone). */
  joins: number;
  lakeBytes: number;
}

/**
 * The sink as its own process (`conveyor sink`), so its peak RSS is its own: decode, gate, dedupe
 * (Postgres), bronze + silver (fsync), commit. It runs with its own settings (SINK_* from the
 * environment, else the defaults).
 */
async function measureSink(): Promise<SinkRound> {
  // A new database each time, as the other benchmarks do: claims of earlier runs (200,000 each)
  // would otherwise be found (a replay's path, not a first pass's) or make the table ever bigger.
  await recreateDatabase(dbUrl.toString(), 'conveyor_bench_sink');
  const lake = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-bench-lake-'));
  const groupId = uniqueName('bench-sink');
  const spawned = performance.now();
  // Started as `npx conveyor sink` starts it: the launcher gives node the sink's flags. With
  // BENCH_SINK_NODE_ARGS (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`, flags NODE_OPTIONS refuses),
  // node is started directly with those and the launcher's flags that they do not set themselves.
  const nodeArgs = (process.env.BENCH_SINK_NODE_ARGS ?? '').split(/\s+/).filter(Boolean);
  const launcherFlags = SINK_NODE_FLAGS.filter((flag) => !nodeArgs.some((a) => a.startsWith(flag.split('=')[0]!)));
  const [command, args] =
    nodeArgs.length === 0 ? [BIN, ['sink']] : [process.execPath, [...launcherFlags, ...nodeArgs, CLI, 'sink']];
  const child = spawn(command, args, {
    env: {
      ...process.env,
      DATABASE_URL: dbUrl.toString(),
      SINK_TOPICS: topic,
      SINK_GROUP_ID: groupId,
      SINK_OUTPUT_DIR: lake,
      SINK_PORT: '0',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  // Peak resident set of the sink process alone (Linux: VmHWM, its high-water mark), and its CPU
  // time (user + system, all threads: a figure less sensitive than events/s to what else runs).
  let peakRssKb = 0;
  /** A kB figure of the sink process's /proc status (VmHWM, VmRSS). */
  const statusKb = (field: string) =>
    Number(new RegExp(`${field}:\\s+(\\d+)`).exec(fs.readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0);
  let cpuTicks = 0;
  let mainThreadTicks = 0;
  const sampler = setInterval(() => {
    try {
      peakRssKb = Math.max(peakRssKb, statusKb('VmHWM'));
      cpuTicks = ticksOf(`/proc/${child.pid}/stat`);
      // The event loop's thread alone; the rest is V8's collector, libuv's file and DuckDB work.
      mainThreadTicks = ticksOf(`/proc/${child.pid}/task/${child.pid}/stat`);
    } catch {
      // The process has exited; its last reading stands.
    }
  }, 100);
  // Timed from the first group join the sink logs: its consumers fetch from then on, which may be
  // before it logs "sink running".
  let joins = 0;
  const ready = await new Promise<number>((resolve, reject) => {
    let buffered = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      for (const line of lines) {
        if (!line.includes('"msg":"joined the consumer group')) continue;
        joins += 1;
        resolve(performance.now());
      }
    });
    void exited.then((code) => reject(new Error(`sink exited with ${code} before it joined its group`)));
  });
  // What the sink holds before its first batch (Node, DuckDB, the clients): the part of the peak
  // that does not depend on the records.
  const rssAtStartMb = Math.round((statusKb('VmRSS') * 1024) / 1e6);
  const postgresBefore = postgresLocal ? postgresTicks() : 0;
  const brokerBefore = brokerTicks();
  const machineBefore = machineTicks();
  await waitForCommitted(kafka, groupId, [topic], 600_000);
  const seconds = (performance.now() - ready) / 1000;
  // Backends that ended during the run are not counted: the sink's pool keeps its connections.
  const postgresCpuS = postgresLocal ? (postgresTicks() - postgresBefore) / 100 : undefined;
  const brokerAfter = brokerTicks();
  const machineAfter = machineTicks();
  child.kill('SIGTERM');
  const code = await exited;
  clearInterval(sampler);
  if (code !== 0) throw new Error(`sink exited with ${code}`);
  const lakeBytes = (fs.readdirSync(lake, { recursive: true }) as string[])
    .map((f) => fs.statSync(path.join(lake, f)))
    .filter((s) => s.isFile())
    .reduce((sum, s) => sum + s.size, 0);
  fs.rmSync(lake, { recursive: true, force: true });
  return {
    eventsPerS: EVENTS / seconds,
    seconds,
    rssMb: Math.round((peakRssKb * 1024) / 1e6),
    rssAtStartMb,
    startupS: (ready - spawned) / 1000,
    cpuS: cpuTicks / 100,
    mainThreadCpuS: mainThreadTicks / 100,
    postgresCpuS,
    brokerCpuS: brokerAfter > 0 ? (brokerAfter - brokerBefore) / 100 : undefined,
    joins,
    machineBusyPct: (100 * (machineAfter.busy - machineBefore.busy)) / (machineAfter.total - machineBefore.total),
    lakeBytes,
  };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const oneDecimal = (n: number) => Number(n.toFixed(1));

const ceilings: number[] = [];
const rounds: SinkRound[] = [];
for (let round = 1; round <= ROUNDS; round++) {
  ceilings.push(await measureCeiling());
  rounds.push(await measureSink());
  const last = rounds.at(-1)!;
  if (ROUNDS > 1) {
    process.stderr.write(
      `round ${round}/${ROUNDS}: sink ${Math.round(last.eventsPerS)} events/s, ceiling ${Math.round(ceilings.at(-1)!)}, RSS ${last.rssMb} MB, sink CPU ${last.cpuS.toFixed(1)} s, group joins ${last.joins}\n`,
    );
  }
}
await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
await admin.disconnect();

/** The median over rounds of one figure (undefined stays undefined: that process is not local). */
const medianOf = (figure: (r: SinkRound) => number | undefined) => {
  const values = rounds.map(figure);
  return values.some((v) => v === undefined) ? undefined : median(values as number[]);
};
const eventsPerS = Math.round(median(rounds.map((r) => r.eventsPerS)));
const ceiling = Math.round(median(ceilings));
const postgresCpuS = medianOf((r) => r.postgresCpuS);
const brokerCpuS = medianOf((r) => r.brokerCpuS);
const result = {
  bench: 'sink',
  events: EVENTS,
  rounds: ROUNDS,
  events_per_s: eventsPerS,
  ceiling_events_per_s: ceiling,
  // Each round's sink against the ceiling measured just before it; then the median of those.
  ratio: Number(median(rounds.map((r, i) => r.eventsPerS / ceilings[i]!)).toFixed(2)),
  mb_per_s: oneDecimal(median(rounds.map((r) => valueBytes / 1e6 / r.seconds))),
  lake_mb_written: oneDecimal(median(rounds.map((r) => r.lakeBytes / 1e6))),
  // The highest peak of any round: the target is a ceiling on memory, not a typical figure.
  rss_mb: Math.max(...rounds.map((r) => r.rssMb)),
  rss_at_start_mb: Math.max(...rounds.map((r) => r.rssAtStartMb)),
  startup_s: oneDecimal(median(rounds.map((r) => r.startupS))),
  sink_cpu_s: oneDecimal(median(rounds.map((r) => r.cpuS))),
  sink_main_thread_cpu_s: oneDecimal(median(rounds.map((r) => r.mainThreadCpuS))),
  postgres_cpu_s: postgresCpuS === undefined ? null : oneDecimal(postgresCpuS),
  broker_cpu_s: brokerCpuS === undefined ? null : oneDecimal(brokerCpuS),
  // Of all cores, while the sink ran: near 100 means the run was bound by the machine's CPU.
  machine_busy_pct: Math.round(median(rounds.map((r) => r.machineBusyPct))),
  cores: os.availableParallelism(),
  // The sink's shape, as its settings give it (from this environment, else the defaults).
  sink_consumers: intSetting('SINK_CONSUMERS'),
  partitions_per_consumer: intSetting('SINK_PARTITIONS_CONCURRENTLY'),
  fetch_mb_per_partition: Number((intSetting('SINK_FETCH_MAX_BYTES') / 1048576).toFixed(2)),
  ...(ROUNDS > 1 && {
    events_per_s_rounds: rounds.map((r) => Math.round(r.eventsPerS)),
    ceiling_events_per_s_rounds: ceilings.map(Math.round),
    rss_mb_rounds: rounds.map((r) => r.rssMb),
  }),
};
const of = ROUNDS > 1 ? ` (median of ${ROUNDS})` : '';
const rows: Array<[string, string]> = [
  ['events', String(EVENTS)],
  [`sink events/s${of}`, String(eventsPerS)],
  [`bare kafkajs consumer events/s${of}`, String(ceiling)],
  ['ratio (target >= 0.6)', String(result.ratio)],
  ['consumed MB/s (Kafka values)', String(result.mb_per_s)],
  ['lake MB written (bronze + silver)', String(result.lake_mb_written)],
  ['sink process peak RSS MB (target < 256)', String(result.rss_mb)],
  ['  of which held when it joined its group', String(result.rss_at_start_mb)],
  ['sink start-up s (not timed above)', String(result.startup_s)],
  ['sink process CPU s (incl. start-up)', String(result.sink_cpu_s)],
  ['  of which its event-loop thread', String(result.sink_main_thread_cpu_s)],
  ['Postgres CPU s during the run', result.postgres_cpu_s === null ? 'not local' : String(result.postgres_cpu_s)],
  ['Kafka broker CPU s during the run', result.broker_cpu_s === null ? 'not local' : String(result.broker_cpu_s)],
  ['machine busy % during the run (all cores)', String(result.machine_busy_pct)],
  [
    'consumers × partitions each × fetch MiB',
    `${result.sink_consumers} × ${result.partitions_per_consumer} × ${result.fetch_mb_per_partition}`,
  ],
];
for (const [name, value] of rows) process.stdout.write(`${name.padEnd(44)} ${value.padStart(10)}\n`);
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
