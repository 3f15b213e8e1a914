import type { Pool } from '../../libs/db/index.ts';
import type { WaitReason } from '../../libs/http/index.ts';
import { Counter, Gauge, type Registry } from '../../libs/observability/index.ts';
import type { PageProgress } from './engine.ts';

/** stopped: ended by SIGTERM / SIGINT, not by a fault. */
export type RunResult = 'succeeded' | 'failed' | 'skipped' | 'stopped';

/** Prometheus metrics of the puller; the HTTP client adds requests, retries and circuit state to the same registry. */
export class PullMetrics {
  private readonly pages: Counter;
  private readonly records: Counter;
  private readonly waits: Counter;
  private readonly waitSeconds: Counter;
  private readonly runs: Counter;

  constructor(
    readonly registry: Registry,
    pool: Pool,
    sources: string[],
  ) {
    const registers = [registry];
    this.pages = new Counter({
      name: 'conveyor_pull_pages_total',
      help: 'Pages fetched and committed, by source',
      labelNames: ['source'],
      registers,
    });
    this.records = new Counter({
      name: 'conveyor_pull_records_total',
      help: 'Records by source and outcome (accepted, duplicate, stale, quarantined)',
      labelNames: ['source', 'outcome'],
      registers,
    });
    this.waits = new Counter({
      name: 'conveyor_pull_waits_total',
      help: 'Waits before a request, by source and reason (rate-limit, retry-after, backoff)',
      labelNames: ['source', 'reason'],
      registers,
    });
    this.waitSeconds = new Counter({
      name: 'conveyor_pull_wait_seconds_total',
      help: 'Seconds spent waiting before requests, by source and reason',
      labelNames: ['source', 'reason'],
      registers,
    });
    this.runs = new Counter({
      name: 'conveyor_pull_runs_total',
      help: 'Runs by source and result (succeeded, failed, skipped)',
      labelNames: ['source', 'result'],
      registers,
    });
    new Gauge({
      name: 'conveyor_pull_seconds_since_success',
      help: 'Seconds since the last successful run of a source by any process; absent until one succeeded',
      labelNames: ['source'],
      registers,
      // Read from pull_runs at scrape time: with leases, the last good run may have been another process's.
      async collect() {
        this.reset();
        const { rows } = await pool.query<{ source: string; age: number }>(
          `SELECT source, extract(epoch FROM clock_timestamp() - max(finished_at))::float8 AS age
           FROM pull_runs WHERE status = 'succeeded' AND source = ANY($1) GROUP BY source`,
          [sources],
        );
        for (const row of rows) this.set({ source: row.source }, row.age);
      },
    });
  }

  page(source: string, p: Omit<PageProgress, 'page' | 'url'>): void {
    this.pages.inc({ source });
    this.records.inc({ source, outcome: 'accepted' }, p.accepted);
    this.records.inc({ source, outcome: 'duplicate' }, p.duplicates);
    this.records.inc({ source, outcome: 'stale' }, p.stale);
    this.records.inc({ source, outcome: 'quarantined' }, p.quarantined);
  }

  wait(source: string, reason: WaitReason, ms: number): void {
    this.waits.inc({ source, reason });
    this.waitSeconds.inc({ source, reason }, ms / 1000);
  }

  run(source: string, result: RunResult): void {
    this.runs.inc({ source, result });
  }
}
