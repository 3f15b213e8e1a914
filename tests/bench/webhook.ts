/**
 * npm run bench:webhook — the webhook service (`conveyor webhook`, a child process) under load from
 * autocannon (another child process), against two ceilings measured in the same run:
 *   1. signed GitHub deliveries to /webhooks/:source, 64 connections, each a new event;
 *   2. POST /ingest, 64 connections, each a new event;
 *   3. POST /ingest/batch, events/s;
 *   4. ceiling: a bare Postgres loop (64 concurrent, same pool size) committing the same rows
 *      (raw event + outbox row) in one autocommitted statement each;
 *   5. ceiling: a Fastify no-op route (JSON body parsed, nothing stored), same load generator.
 * Prints a table, then one JSON line.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import Fastify from 'fastify';
import pg from 'pg';
import { intSetting, setting } from '../../libs/config/index.ts';
import { recreateDatabase } from '../../libs/db/index.ts';
import { shardOf } from '../../libs/outbox/index.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const CONNECTIONS = 64;
const BATCH_EVENTS = 500;
const BATCH_CONNECTIONS = 4;
const SECRET = 'bench-secret';
const SELF = new URL(import.meta.url).pathname;
const BIN = new URL('../../services/cli/bin/conveyor', import.meta.url).pathname;

interface LoadResult {
  req_per_s: number;
  p50_ms: number;
  p99_ms: number;
  non2xx: number;
  errors: number;
}
type Kind = 'github' | 'ingest' | 'batch' | 'noop';

// autocannon ships no types; only the fields read here are declared.
type Autocannon = (options: Record<string, unknown>) => Promise<{
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}>;

function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** ~400 B payload, different for every request so every request is a new event. */
function payload(n: number) {
  return { seq: n, action: 'opened', repository: { full_name: `octo/repo-${n % 1000}` }, note: 'x'.repeat(256) };
}

function ingestEvent(run: string, n: number) {
  return {
    source: `bench-${run}`,
    event_type: 'opened',
    entity_id: `e-${n % 1000}`,
    event_time: new Date().toISOString(),
    payload: payload(n),
  };
}

/** The load generator: runs in its own process so it does not share the service's event loop. */
async function loadMode(url: string, kind: Kind, connections: number, seconds: number): Promise<void> {
  const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;
  const run = randomUUID().slice(0, 8);
  let n = 0;
  const paths: Record<Kind, string> = {
    github: '/webhooks/github',
    ingest: '/ingest',
    batch: '/ingest/batch',
    noop: '/noop',
  };
  const result = await autocannon({
    url,
    connections,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        path: paths[kind],
        setupRequest: (request: Record<string, unknown>) => {
          n++;
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          let body: string;
          if (kind === 'github') {
            body = JSON.stringify(payload(n));
            headers['x-hub-signature-256'] = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
            headers['x-github-delivery'] = `${run}-${n}`;
            headers['x-github-event'] = 'pull_request';
          } else if (kind === 'batch') {
            const events = Array.from({ length: BATCH_EVENTS }, (_, i) => ingestEvent(run, n * BATCH_EVENTS + i));
            body = JSON.stringify({ events });
          } else {
            body = JSON.stringify(ingestEvent(run, n));
          }
          return { ...request, headers, body };
        },
      },
    ],
  });
  const out: LoadResult = {
    req_per_s: result.requests.average,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

/** The no-op ceiling: a Fastify route that parses the JSON body and answers, storing nothing. */
async function noopMode(): Promise<void> {
  const app = Fastify({ logger: false });
  app.post('/noop', async (request) => ({ ok: typeof request.body === 'object' }));
  await app.listen({ port: 0, host: '127.0.0.1' });
  process.stdout.write(`${JSON.stringify({ port: (app.server.address() as { port: number }).port })}\n`);
}

/** `command` is node (with `args`), or the CLI file, which node runs with the CLI's own flags. */
function child(command: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  return spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Resolves with the first stdout line matching `pattern`; the rest of stdout is drained. */
function firstLine(proc: ChildProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    let found = false;
    proc.stdout!.on('data', (data: Buffer) => {
      if (found) return;
      buffer += data;
      const match = pattern.exec(buffer);
      if (match) {
        found = true;
        resolve(match);
      }
    });
    proc.on('exit', (code) => {
      if (!found) reject(new Error(`child exited (${code}) before printing ${pattern}:\n${buffer}`));
    });
  });
}

async function load(url: string, kind: Kind, connections: number, seconds = SECONDS): Promise<LoadResult> {
  const proc = child(process.execPath, [
    '--import',
    'tsx',
    SELF,
    '--load',
    url,
    kind,
    String(connections),
    String(seconds),
  ]);
  const match = await firstLine(proc, /^(\{.*\})$/m);
  return JSON.parse(match[1]!) as LoadResult;
}

function freshDatabase(): Promise<string> {
  return recreateDatabase(setting('DATABASE_URL'), 'conveyor_bench_webhook');
}

/** The ceiling: the same rows, committed by the simplest possible client at the same concurrency. */
async function barePostgres(databaseUrl: string, poolMax: number): Promise<LoadResult> {
  const pool = new pg.Pool({ connectionString: databaseUrl, max: poolMax });
  const sql = `WITH e AS (
      INSERT INTO raw_events (source, event_id, event_type, entity_key, event_time, payload, lineage)
      VALUES ($1, $2, 'opened', $3, now(), $4, '{}') RETURNING source, event_id)
    INSERT INTO outbox (source, event_id, topic, shard) SELECT source, event_id, 'conveyor.bare', $5 FROM e`;
  const latencies: number[] = [];
  let n = 0;
  const deadline = performance.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: CONNECTIONS }, async () => {
      while (performance.now() < deadline) {
        const i = n++;
        const key = `e-${i % 1000}`;
        const started = performance.now();
        await pool.query(sql, ['bare', `bare-${i}`, key, JSON.stringify(payload(i)), shardOf(key)]);
        latencies.push(performance.now() - started);
      }
    }),
  );
  await pool.end();
  latencies.sort((a, b) => a - b);
  const at = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))]!);
  return { req_per_s: latencies.length / SECONDS, p50_ms: at(0.5), p99_ms: at(0.99), non2xx: 0, errors: 0 };
}

function peakRssMb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Math.round(Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024);
}

async function main(): Promise<void> {
  const databaseUrl = await freshDatabase();
  const poolMax = intSetting('WEBHOOK_DB_POOL_MAX', process.env, 1);

  log('starting conveyor webhook ...');
  const service = child(BIN, ['webhook'], {
    DATABASE_URL: databaseUrl,
    WEBHOOK_PORT: '0',
    WEBHOOK_SOURCES_FILE: '',
    GITHUB_WEBHOOK_SECRET: SECRET,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  });
  const port = Number((await firstLine(service, /"port":(\d+)/))[1]);
  const url = `http://127.0.0.1:${port}`;

  log('warm-up (3 s) ...');
  await load(url, 'github', CONNECTIONS, 3);
  log(`signed /webhooks/github, ${CONNECTIONS} connections, ${SECONDS} s ...`);
  const github = await load(url, 'github', CONNECTIONS);
  const rssAfterSingleMb = peakRssMb(service.pid!);
  log(`/ingest, ${CONNECTIONS} connections, ${SECONDS} s ...`);
  const ingest = await load(url, 'ingest', CONNECTIONS);
  log(`/ingest/batch (${BATCH_EVENTS} events), ${BATCH_CONNECTIONS} connections, ${SECONDS} s ...`);
  const batch = await load(url, 'batch', BATCH_CONNECTIONS);
  const rssMb = peakRssMb(service.pid!);
  service.kill('SIGTERM');
  await new Promise((resolve) => service.on('exit', resolve));

  log(`ceiling: bare Postgres, ${CONNECTIONS} concurrent, pool ${poolMax}, ${SECONDS} s ...`);
  const bare = await barePostgres(databaseUrl, poolMax);
  log(`ceiling: Fastify no-op route, ${CONNECTIONS} connections, ${SECONDS} s ...`);
  const noopServer = child(process.execPath, ['--import', 'tsx', SELF, '--noop']);
  const noopPort = Number((await firstLine(noopServer, /"port":(\d+)/))[1]);
  const noop = await load(`http://127.0.0.1:${noopPort}`, 'noop', CONNECTIONS);
  noopServer.kill('SIGTERM');

  const { rows } = await new pg.Pool({ connectionString: databaseUrl, max: 1 }).query<{ n: number }>(
    "SELECT count(*)::int AS n FROM raw_events WHERE source <> 'bare'",
  );
  const row = (name: string, r: LoadResult, unit = 'req/s') =>
    `${name.padEnd(38)} ${r.req_per_s.toFixed(0).padStart(8)} ${unit.padEnd(9)} p50 ${String(r.p50_ms).padStart(4)} ms  p99 ${String(r.p99_ms).padStart(4)} ms  non-2xx ${r.non2xx}  errors ${r.errors}`;
  console.log(row('webhook /webhooks/github (signed)', github));
  console.log(row('webhook /ingest', ingest));
  console.log(row(`webhook /ingest/batch (${BATCH_EVENTS}/request)`, batch));
  console.log(`${'  = batch events/s'.padEnd(38)} ${(batch.req_per_s * BATCH_EVENTS).toFixed(0).padStart(8)}`);
  console.log(row('ceiling: bare Postgres insert+commit', bare, 'commits/s'));
  console.log(row('ceiling: Fastify no-op route', noop));
  console.log(
    `events stored by the service: ${rows[0]!.n}; service peak RSS ${rssAfterSingleMb} MB after the single-event runs, ${rssMb} MB after the batch run`,
  );
  console.log(
    JSON.stringify({
      bench: 'webhook',
      req_per_s: Math.round(github.req_per_s),
      ceiling_req_per_s: Math.round(bare.req_per_s),
      ratio: Number((github.req_per_s / bare.req_per_s).toFixed(3)),
      p99_ms: github.p99_ms,
      ingest_req_per_s: Math.round(ingest.req_per_s),
      ingest_p99_ms: ingest.p99_ms,
      batch_events_per_s: Math.round(batch.req_per_s * BATCH_EVENTS),
      noop_req_per_s: Math.round(noop.req_per_s),
      rss_mb: rssMb,
      non2xx: github.non2xx + ingest.non2xx + batch.non2xx,
    }),
  );
  process.exit(0);
}

const [mode, ...rest] = process.argv.slice(2);
if (mode === '--load') await loadMode(rest[0]!, rest[1] as Kind, Number(rest[2]), Number(rest[3]));
else if (mode === '--noop') await noopMode();
else await main();
