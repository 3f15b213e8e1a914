import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { changeFeedSource, startSimulator } from '../../infra/simulator/index.ts';
import { stackLayout, stackUp } from '../../infra/stack/stack.ts';
import { conveyorHome, intSetting, setting } from '../../libs/config/index.ts';
import { createPool, ensureDatabase, migrate, type Pool, recreateDatabase } from '../../libs/db/index.ts';
import { type Admin, createKafka, ensureTopics, groupLag } from '../../libs/kafka/index.ts';
import { LocalDirStorage } from '../../libs/lake/storage.ts';
import { topicFor } from '../../libs/outbox/index.ts';
import { parseDefinition } from '../puller/definition.ts';
import { newOwner } from '../puller/lease.ts';
import { pullOnce } from '../puller/runner.ts';
import { type LayerReport, verifyOutput } from '../sink/verify.ts';
import { freePort, ServiceProcess } from './services.ts';
import { emptyTally, githubDeliveries, ingestEvents, sendDeliveries, sendIngestBatches } from './traffic.ts';

export interface DemoOptions {
  /** Names the demo's database (conveyor_<name>), sources (<name>-api, ...), lake and consumer group. */
  name: string;
  records: number;
  pageSize: number;
  deliveries: number;
  retryShare: number;
  ingest: number;
  /** SIGKILL the relay and the sink this many times each while events flow; 0 = no fault drill. */
  chaosKills: number;
  /** Start from nothing: drop the demo's database, lake, topics and consumer group first. */
  fresh: boolean;
  timeoutMs: number;
}

export interface StageCounts {
  received: number;
  accepted: number;
  duplicates: number;
}

export interface DemoReport {
  demo: string;
  chaos: { kills: Array<{ service: string; at: string }> } | null;
  duration_s: number;
  new_events: number;
  stages: {
    pull: StageCounts & { pages: number; throttled: number; waited_s: number };
    webhooks: StageCounts & { retries_sent: number; rejected: Record<string, number> };
    ingest: StageCounts & { rejected: Record<string, number> };
    relay: { published: number; failed_to_dlq: number };
    sink: { consumed: number; written: number; duplicates_dropped: number; dlq: number };
  };
  totals: { events_in_postgres: number; events_in_output: number };
  verify: { missing: number; duplicated: number; extra: number; layers: LayerReport[] };
  output: { dir: string; files: number; bytes: number; fingerprint: string; unchanged: boolean | null };
  duckdb: string[];
  services: Record<string, string> | null;
}

/** What the command shows while the demo runs. */
export interface DemoProgress {
  log(line: string): void;
  /** Stage progress: `total` may grow (published and written follow what was accepted). */
  stage(name: StageName, value: number, total: number): void;
}

export const STAGES = ['pull', 'webhooks', 'ingest', 'published', 'written'] as const;
export type StageName = (typeof STAGES)[number];

const NAME = /^[a-z][a-z0-9]{0,20}$/;
/** The simulated API's records carry times from this instant on, one second apart: identical every run. */
const SIMULATOR_CLOCK = new Date('2026-01-01T00:00:00Z');
const SINK_COUNTERS = [
  'conveyor_sink_consumed_total',
  'conveyor_sink_duplicates_dropped_total',
  'conveyor_sink_dlq_total',
] as const;

export interface DemoRun {
  report: DemoReport;
  /** Stops the services (SIGTERM: they finish and commit). Already done unless keepRunning. */
  stop(): Promise<void>;
}

export async function runDemo(options: DemoOptions, progress: DemoProgress, keepRunning = false): Promise<DemoRun> {
  if (!NAME.test(options.name)) {
    throw new Error(`--name: lowercase letters and digits, starting with a letter, at most 21; got "${options.name}"`);
  }
  const started = Date.now();
  const home = path.join(conveyorHome(), options.name);
  const lakeDir = path.join(home, 'lake');
  const sources = { api: `${options.name}-api`, github: `${options.name}-github`, ingest: `${options.name}-ingest` };
  const sourceList = Object.values(sources);
  const topics = sourceList.map(topicFor);
  const groupId = `conveyor-${options.name}-sink`;

  progress.log('stack: starting what is not running (Kafka, schema registry, Postgres)');
  const exports = await stackUp(await stackLayout(), (line) => progress.log(`stack: ${line}`));
  Object.assign(process.env, exports);
  const databaseUrl = new URL(setting('DATABASE_URL'));
  databaseUrl.pathname = `/conveyor_${options.name}`;
  const kafka = createKafka({ clientId: `conveyor-${options.name}` });
  const admin = kafka.admin();
  await admin.connect();

  const stale = options.fresh ? undefined : await staleState(databaseUrl, admin, topics, home, sourceList);
  if (stale) progress.log(`${stale}: starting this demo fresh`);
  if (options.fresh || stale) {
    progress.log(`fresh start: dropping database ${databaseUrl.pathname.slice(1)}, ${lakeDir}, topics and group`);
    await resetKafka(admin, topics, groupId);
    fs.rmSync(lakeDir, { recursive: true, force: true });
    await recreateDatabase(setting('DATABASE_URL'), `conveyor_${options.name}`);
  }
  // Created as the relay would create them, so the sink can subscribe before the first event is published.
  await ensureTopics(
    admin,
    topics.map((topic) => ({ topic, numPartitions: intSetting('RELAY_TOPIC_PARTITIONS', process.env, 1) })),
  );
  const pool = createPool({ url: databaseUrl.toString(), max: 4, applicationName: 'conveyor-demo' });
  const { services, secret } = await startServices(options, { home, lakeDir, databaseUrl, sources, groupId, exports });
  const stopServices = async () => {
    await Promise.all(Object.values(services).map((s) => s.stop()));
  };
  const sim = await startSimulator({
    items: options.records,
    clockStart: SIMULATOR_CLOCK,
    // A small server-side rate limit and one 429 storm: the puller must pace itself and wait.
    faults: { rateLimit: { perSecond: 4, burst: 2 }, storm: { requests: 2, retryAfterS: 1 } },
  });

  try {
    const before = await eventCount(pool, sourceList);
    const runStart = await dbNow(pool);
    const deliveries = githubDeliveries(options.deliveries, options.retryShare);
    const events = ingestEvents(sources.ingest, options.ingest);
    const webhookTally = emptyTally();
    const ingestTally = emptyTally();
    const pulled = { records: 0, pages: 0 };

    // The fault drill spreads its traffic over about 15 s, so the kills land while events are in flight.
    const pacing = options.chaosKills > 0 ? { concurrency: 2, pauseMs: 20 } : { concurrency: 16, pauseMs: 0 };
    const producing = Promise.all([
      pullOnce(
        parseDefinition(
          {
            ...changeFeedSource(sim.url, sources.api, options.pageSize),
            rate_limit: { per_second: 3, burst: 2 },
          },
          'demo (built in)',
        ),
        {
          pool,
          owner: newOwner(),
          leaseTtlMs: 60_000,
          waitLeaseMs: 30_000,
          onPage: (p) => {
            pulled.records += p.records;
            pulled.pages += 1;
          },
          onWait: (w) => progress.log(`pull: waiting ${(w.ms / 1000).toFixed(1)} s (${w.reason})`),
        },
      ),
      sendDeliveries(`${services.webhook.url}/webhooks/${sources.github}`, secret, deliveries, pacing, webhookTally),
      sendIngestBatches(`${services.webhook.url}/ingest/batch`, events, options.chaosKills > 0 ? 25 : 500, ingestTally),
    ]);
    let produced = false;
    const producingDone = producing.then(
      () => {
        produced = true;
      },
      () => {
        produced = true;
      },
    );

    const status = async () => {
      const counts = await pipelineCounts(pool, sourceList, runStart);
      const behind = produced ? await groupLag(admin, groupId, topics) : Number.POSITIVE_INFINITY;
      progress.stage('pull', pulled.records, options.records);
      progress.stage('webhooks', webhookTally.sent, options.deliveries);
      progress.stage('ingest', ingestTally.sent, options.ingest);
      progress.stage('published', counts.published, counts.acceptedThisRun);
      progress.stage('written', counts.written, counts.acceptedThisRun);
      await services.sink.scrape([...SINK_COUNTERS]);
      return { ...counts, behind, caughtUp: produced && counts.pending === 0 && behind === 0 };
    };

    const kills: Array<{ service: string; at: string }> = [];
    // A killed service restarts in the background (a sink waits out its dead self's session before it
    // gets partitions), so the drill goes on killing the other one meanwhile.
    const restarting = new Map<ServiceProcess, Promise<void>>();
    let restartFailure: Error | undefined;
    const deadline = Date.now() + options.timeoutMs;
    let lastKillAt = 0;
    for (;;) {
      if (restartFailure) throw restartFailure;
      const s = await status();
      if (s.caughtUp && restarting.size === 0) break;
      if (Date.now() > deadline) {
        throw new Error(
          `the pipeline did not catch up within ${options.timeoutMs / 1000} s: ` +
            `${s.pending} outbox rows unpublished, sink group ${groupId} ${s.behind} records behind; ` +
            `service logs are in ${path.join(home, 'logs')}`,
        );
      }
      if (options.chaosKills > 0 && Date.now() - lastKillAt > 1500) {
        const victim = chaosVictim(services, options.chaosKills, { ...s, producing: !produced }, restarting);
        if (victim) {
          const at = `${s.published} published, ${s.written} written of ${s.acceptedThisRun} accepted`;
          progress.log(`chaos: kill -9 ${victim.name} (pid ${victim.pid}) at ${at}; restarting it`);
          await victim.kill9();
          kills.push({ service: victim.name, at });
          const restart = victim
            .start()
            .catch((error: Error) => {
              restartFailure = error;
            })
            .finally(() => restarting.delete(victim));
          restarting.set(victim, restart);
          lastKillAt = Date.now();
        }
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    await producingDone;
    const [pullStats] = await producing;
    const sinkCounters = await settledCounters(services.sink);
    const final = await pipelineCounts(pool, sourceList, runStart);

    const layers = await verifyOutput(pool, new LocalDirStorage(lakeDir), { sources: sourceList });
    const after = await eventCount(pool, sourceList);
    const output = fingerprint(lakeDir);
    const previous = readPreviousReport(home)?.output?.fingerprint;
    const report: DemoReport = {
      demo: options.name,
      chaos: options.chaosKills > 0 ? { kills } : null,
      duration_s: Math.round((Date.now() - started) / 100) / 10,
      new_events: after - before,
      stages: {
        pull: {
          received: pullStats.records,
          accepted: pullStats.accepted,
          duplicates: pullStats.duplicates + pullStats.stale,
          pages: pullStats.pages,
          throttled: pullStats.throttled,
          waited_s: Math.round(pullStats.waitedMs / 100) / 10,
        },
        webhooks: {
          received: webhookTally.sent,
          accepted: webhookTally.accepted,
          duplicates: webhookTally.duplicates,
          retries_sent: deliveries.filter((d) => d.retry).length,
          rejected: webhookTally.rejected,
        },
        ingest: {
          received: ingestTally.sent,
          accepted: ingestTally.accepted,
          duplicates: ingestTally.duplicates,
          rejected: ingestTally.rejected,
        },
        relay: { published: final.published, failed_to_dlq: final.failed },
        sink: {
          consumed: sinkCounters.conveyor_sink_consumed_total ?? 0,
          written: final.written,
          duplicates_dropped: sinkCounters.conveyor_sink_duplicates_dropped_total ?? 0,
          dlq: sinkCounters.conveyor_sink_dlq_total ?? 0,
        },
      },
      totals: { events_in_postgres: after, events_in_output: layers[0]?.distinctInOutput ?? 0 },
      verify: {
        missing: sum(layers, 'missing'),
        duplicated: sum(layers, 'duplicated'),
        extra: sum(layers, 'extra'),
        layers,
      },
      output: { dir: lakeDir, ...output, unchanged: previous ? previous === output.fingerprint : null },
      duckdb: duckdbQueries(lakeDir, sources),
      services: keepRunning
        ? Object.fromEntries(Object.values(services).map((s) => [s.name, `${s.url} (pid ${s.pid})`]))
        : null,
    };
    fs.writeFileSync(path.join(home, 'last-report.json'), `${JSON.stringify(report, null, 2)}\n`);
    if (!keepRunning) await stopServices();
    return { report, stop: stopServices };
  } catch (error) {
    await stopServices();
    throw error;
  } finally {
    await sim.close();
    await pool.end();
    await admin.disconnect();
  }
}

type Services = Record<'webhook' | 'relay' | 'sink', ServiceProcess>;

async function startServices(
  options: DemoOptions,
  where: {
    home: string;
    lakeDir: string;
    databaseUrl: URL;
    sources: Record<string, string>;
    groupId: string;
    exports: Record<string, string>;
  },
): Promise<{ services: Services; secret: string }> {
  // A fresh secret each run, handed to the webhook service by environment variable and never printed.
  const secret = randomBytes(24).toString('base64url');
  const sourcesFile = path.join(where.home, 'webhook-sources.json');
  fs.mkdirSync(where.home, { recursive: true });
  fs.writeFileSync(
    sourcesFile,
    JSON.stringify({ sources: { [where.sources.github!]: { scheme: 'github', secret_env: 'DEMO_WEBHOOK_SECRET' } } }),
  );
  const chaos = options.chaosKills > 0;
  const env = {
    ...process.env,
    ...where.exports,
    DATABASE_URL: where.databaseUrl.toString(),
    // The demo registers its own subjects; production keeps auto-registration off (schema gate).
    RELAY_AUTO_REGISTER: 'true',
    // Short leases and sessions so a killed relay's shards and a killed sink's partitions move in seconds.
    RELAY_LEASE_TTL_MS: '3000',
    SINK_SESSION_TIMEOUT_MS: '6000',
    // Small batches and files during the drill: more commits in flight for the kills to land between.
    ...(chaos ? { RELAY_BATCH_SIZE: '50', SINK_FILE_MAX_RECORDS: '200' } : {}),
    SINK_OUTPUT_DIR: where.lakeDir,
    SINK_GROUP_ID: where.groupId,
    SINK_TOPICS: Object.values(where.sources).map(topicFor).join(','),
    SINK_ENTITY_SOURCES: where.sources.api!,
    WEBHOOK_SOURCES_FILE: sourcesFile,
    DEMO_WEBHOOK_SECRET: secret,
  };
  const logs = path.join(where.home, 'logs');
  const make = async (name: 'webhook' | 'relay' | 'sink', portVar: string) => {
    const port = await freePort();
    return new ServiceProcess(name, port, { ...env, [portVar]: String(port) }, path.join(logs, `${name}.log`));
  };
  const webhook = await make('webhook', 'WEBHOOK_PORT');
  const relay = await make('relay', 'RELAY_PORT');
  const sink = await make('sink', 'SINK_PORT');
  const started = await Promise.allSettled([webhook.start(), relay.start(), sink.start()]);
  const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    // Leave nothing behind: the ones that did start are stopped before the error is reported.
    await Promise.all([webhook, relay, sink].map((s) => s.stop()));
    throw failed.reason;
  }
  return { services: { webhook, relay, sink }, secret };
}

/**
 * The next service to kill while events are still flowing: the relay while producers send or rows
 * wait to be published, the sink while producers send or it has not written everything; turn about.
 */
function chaosVictim(
  services: Services,
  kills: number,
  s: { producing: boolean; pending: number; written: number; acceptedThisRun: number },
  restarting: ReadonlyMap<ServiceProcess, unknown>,
): ServiceProcess | undefined {
  if (s.acceptedThisRun === 0) return undefined;
  const { relay, sink } = services;
  const relayDue = relay.kills < kills && !restarting.has(relay) && (s.producing || s.pending > 0);
  const sinkDue = sink.kills < kills && !restarting.has(sink) && (s.producing || s.written < s.acceptedThisRun);
  if (relayDue && (!sinkDue || relay.kills <= sink.kills)) return relay;
  return sinkDue ? sink : undefined;
}

async function resetKafka(admin: Admin, topics: string[], groupId: string): Promise<void> {
  await admin.deleteGroups([groupId]).catch(() => undefined);
  const existing = (await admin.listTopics()).filter((t) => topics.includes(t));
  if (existing.length === 0) return;
  await admin.deleteTopics({ topics: existing });
  // Deletion is asynchronous; the relay re-creates the topics and must not find them half-deleted.
  for (let i = 0; i < 100; i++) {
    const left = (await admin.listTopics()).filter((t) => topics.includes(t));
    if (left.length === 0) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`topics ${existing.join(', ')} were not deleted within 20 s`);
}

async function dbNow(pool: Pool): Promise<Date> {
  const { rows } = await pool.query<{ now: Date }>('SELECT clock_timestamp() AS now');
  return rows[0]!.now;
}

async function eventCount(pool: Pool, sources: string[]): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    'SELECT count(*) AS n FROM raw_events WHERE source = ANY($1::text[])',
    [sources],
  );
  return Number(rows[0]!.n);
}

/** Durable progress, read from Postgres: what survives a kill -9 is what counts. */
async function pipelineCounts(pool: Pool, sources: string[], since: Date) {
  const { rows } = await pool.query<{
    accepted: string;
    published: string;
    failed: string;
    pending: string;
    written: string;
  }>(
    `SELECT
       (SELECT count(*) FROM outbox WHERE source = ANY($1::text[]) AND created_at >= $2) AS accepted,
       (SELECT count(*) FROM outbox WHERE source = ANY($1::text[]) AND published_at >= $2) AS published,
       (SELECT count(*) FROM outbox WHERE source = ANY($1::text[]) AND failed_at >= $2) AS failed,
       (SELECT count(*) FROM outbox WHERE source = ANY($1::text[]) AND published_at IS NULL AND failed_at IS NULL) AS pending,
       (SELECT count(*) FROM sink_claims WHERE source = ANY($1::text[]) AND claimed_at >= $2) AS written`,
    [sources, since],
  );
  const r = rows[0]!;
  return {
    acceptedThisRun: Number(r.accepted),
    published: Number(r.published),
    failed: Number(r.failed),
    pending: Number(r.pending),
    written: Number(r.written),
  };
}

/** The sink counts a batch just after committing it: read until two reads agree. */
async function settledCounters(sink: ServiceProcess): Promise<Record<string, number>> {
  let last = await sink.scrape([...SINK_COUNTERS]);
  for (let i = 0; i < 20; i++) {
    await new Promise((r) => setTimeout(r, 250));
    const now = await sink.scrape([...SINK_COUNTERS]);
    if (SINK_COUNTERS.every((name) => now[name] === last[name])) return now;
    last = now;
  }
  return last;
}

function sum(layers: LayerReport[], field: 'missing' | 'duplicated' | 'extra'): number {
  return layers.reduce((total, l) => total + l[field], 0);
}

/** A digest of every file in the lake (path and content), to show a second run changed nothing. */
function fingerprint(dir: string): { files: number; bytes: number; fingerprint: string } {
  const hash = createHash('sha256');
  let files = 0;
  let bytes = 0;
  const walk = (at: string) => {
    if (!fs.existsSync(at)) return;
    for (const entry of fs.readdirSync(at, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(at, entry.name);
      if (entry.isDirectory()) {
        walk(full);
        continue;
      }
      const content = fs.readFileSync(full);
      files += 1;
      bytes += content.length;
      hash.update(path.relative(dir, full)).update('\0').update(createHash('sha256').update(content).digest());
    }
  };
  walk(dir);
  return { files, bytes, fingerprint: hash.digest('hex').slice(0, 16) };
}

function readPreviousReport(home: string): DemoReport | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(home, 'last-report.json'), 'utf8')) as DemoReport;
  } catch {
    return undefined;
  }
}

/**
 * A demo's state lives in three places: its database (on the Postgres server, shared by checkouts),
 * its topics (in the broker's data) and its lake (under CONVEYOR_HOME). When they no longer belong
 * together — another checkout ran the demo, `stack down --purge` emptied Kafka, the lake was deleted —
 * a run on top would report events as duplicates that are in no output. Says why, or undefined.
 */
async function staleState(
  databaseUrl: URL,
  admin: Admin,
  topics: string[],
  home: string,
  sources: string[],
): Promise<string | undefined> {
  await ensureDatabase(databaseUrl.toString());
  await migrate({ url: databaseUrl.toString() });
  const pool = createPool({ url: databaseUrl.toString(), max: 1, applicationName: 'conveyor-demo' });
  try {
    const stored = await eventCount(pool, sources);
    if (stored === 0) return undefined;
    const previous = readPreviousReport(home);
    if (previous?.totals?.events_in_postgres !== stored) {
      return `database ${databaseUrl.pathname.slice(1)} holds ${stored} events that this checkout's demo (${home}) did not write`;
    }
    const existing = new Set(await admin.listTopics());
    const missing = topics.filter((t) => !existing.has(t));
    if (missing.length > 0) return `topics ${missing.join(', ')} are gone from Kafka (a purged or new stack)`;
    return undefined;
  } finally {
    await pool.end();
  }
}

function duckdbQueries(lakeDir: string, sources: Record<string, string>): string[] {
  return [
    `SELECT source, event_type, count(*) AS events FROM read_json_auto('${lakeDir}/bronze/**/*.jsonl') GROUP BY ALL ORDER BY ALL;`,
    `SELECT entity_key, updated_at, payload FROM read_parquet('${lakeDir}/silver/${sources.api}_latest/**/*.parquet') ORDER BY updated_at DESC LIMIT 5;`,
  ];
}
