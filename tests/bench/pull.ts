// npm run bench:pull: pulls from the simulator into a scratch database and reports, last line as JSON:
// the share of a server's request budget used and the 429s received when paced by the shared token
// bucket, then records/s with no limit, and the peak RSS. Figures, not pass/fail.
import { randomUUID } from 'node:crypto';
import { changeFeedSource, startSimulator } from '../../infra/simulator/index.ts';
import { setting } from '../../libs/config/index.ts';
import { createPool, migrate } from '../../libs/db/index.ts';
import { parseDefinition } from '../../services/puller/definition.ts';
import { runSource } from '../../services/puller/engine.ts';
import { acquireLease } from '../../services/puller/lease.ts';

const RATE = Number(process.env.BENCH_RATE ?? 50);
const PACED_PAGES = Number(process.env.BENCH_PAGES ?? 500);
const ITEMS = Number(process.env.BENCH_ITEMS ?? 50_000);

const url = new URL(setting('DATABASE_URL'));
url.pathname = `/${process.env.CONVEYOR_BENCH_DATABASE ?? 'conveyor_bench_pull'}`;
await migrate({ url: url.toString() });
const pool = createPool({ url: url.toString(), max: 4, applicationName: 'conveyor-bench-pull' });
const sim = await startSimulator({ items: ITEMS });

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 100);

const run = async (name: string, extra: Record<string, unknown>, limit: number) => {
  const def = parseDefinition(
    {
      ...changeFeedSource(sim.url, name, limit),
      ...extra,
    },
    'bench',
  );
  await acquireLease(pool, name, 'bench', 3_600_000);
  sim.resetStats();
  const started = performance.now();
  const stats = await runSource(def, { pool, owner: 'bench' });
  return { stats, seconds: (performance.now() - started) / 1000 };
};

const tag = randomUUID().slice(0, 8);
// Steady state: the server allows RATE requests/s (burst RATE); the source is paced to the same rate,
// with a small burst so a slow page commit is made up for instead of wasting budget.
sim.faults.rateLimit = { perSecond: RATE, burst: RATE };
const paced = await run(
  `bench-paced-${tag}`,
  { rate_limit: { per_second: RATE, burst: 5 }, max_pages: PACED_PAGES },
  10,
);
const requests = sim.stats.requests;
const throttled = sim.stats.byStatus[429] ?? 0;
// Steady state = from the first request the server saw to the last; the server allowed RATE per second plus its burst.
const windowS = (sim.stats.times.at(-1)! - sim.stats.times[0]!) / 1000;
const budgetUsed = requests / (RATE * windowS + 1);
const budgetUsedWholeRun = requests / (RATE * paced.seconds);
delete sim.faults.rateLimit;

const free = await run(`bench-free-${tag}`, {}, 500);
const recordsPerS = free.stats.records / free.seconds;
clearInterval(sampler);
peakRss = Math.max(peakRss, process.memoryUsage().rss);

const rows: Array<[string, string]> = [
  ['server budget', `${RATE} req/s`],
  ['paced run', `${requests} requests in ${paced.seconds.toFixed(2)} s`],
  ['budget used (steady state)', `${(budgetUsed * 100).toFixed(1)} % over ${windowS.toFixed(2)} s`],
  ['budget used (whole run, with start-up)', `${(budgetUsedWholeRun * 100).toFixed(1)} %`],
  ['429s received (paced)', String(throttled)],
  ['unthrottled', `${free.stats.records} records, ${free.stats.pages} pages in ${free.seconds.toFixed(2)} s`],
  ['records/s (unthrottled, into Postgres)', recordsPerS.toFixed(0)],
  ['peak RSS', `${(peakRss / 1048576).toFixed(0)} MB`],
];
for (const [k, v] of rows) process.stdout.write(`${k.padEnd(40)} ${v}\n`);
process.stdout.write(
  `${JSON.stringify({
    bench: 'pull',
    budget_used: Number(budgetUsed.toFixed(3)),
    throttled_429: throttled,
    records_per_s: Math.round(recordsPerS),
    rss_mb: Math.round(peakRss / 1048576),
    rate_per_s: RATE,
    paced_requests: requests,
  })}\n`,
);
await sim.close();
await pool.end();
