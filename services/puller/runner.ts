import { setTimeout as delay } from 'node:timers/promises';
import type { SourceDefinition } from './definition.ts';
import { loadCheckpoint, type RunOptions, type RunStats, runSource } from './engine.ts';
import { acquireLease, leaseHolder, withLease } from './lease.ts';

export class LeaseBusyError extends Error {
  constructor(source: string, owner: string, until: Date) {
    super(`source ${source} is already being pulled by ${owner} (lease until ${until.toISOString()})`);
    this.name = 'LeaseBusyError';
  }
}

export interface PullOptions extends Omit<RunOptions, 'owner'> {
  owner: string;
  leaseTtlMs: number;
  /** How long to wait for another process's run of the same source to finish; 0 = do not wait. */
  waitLeaseMs: number;
}

/** Runs of a source kept in pull_runs (on a 30 s schedule, about eight hours of them). */
export const RUNS_KEPT = 1000;
/**
 * A source's runs but the newest RUNS_KEPT, and but its latest success, which the
 * seconds-since-success gauge reads. Run under the source's lease, so one process prunes at a time.
 */
const PRUNE_RUNS_SQL = `DELETE FROM pull_runs WHERE source = $1
  AND id < (SELECT id FROM pull_runs WHERE source = $1 ORDER BY id DESC OFFSET $2::int - 1 LIMIT 1)
  AND id <> coalesce((SELECT max(id) FROM pull_runs WHERE source = $1 AND status = 'succeeded'), 0)`;

/** One run of a source under its lease, recorded in pull_runs (the last RUNS_KEPT of them). */
export async function pullOnce(def: SourceDefinition, opts: PullOptions): Promise<RunStats> {
  const deadline = Date.now() + opts.waitLeaseMs;
  while (!(await acquireLease(opts.pool, def.name, opts.owner, opts.leaseTtlMs))) {
    if (Date.now() >= deadline || opts.signal?.aborted) {
      const holder = await leaseHolder(opts.pool, def.name);
      throw new LeaseBusyError(def.name, holder?.owner ?? 'another process', holder?.expires_at ?? new Date());
    }
    await delay(250);
  }
  return withLease(opts.pool, def.name, opts.owner, opts.leaseTtlMs, async (leaseLost) => {
    const { rows } = await opts.pool.query<{ id: string }>(
      'INSERT INTO pull_runs (source, owner) VALUES ($1, $2) RETURNING id',
      [def.name, opts.owner],
    );
    const runId = rows[0]!.id;
    await opts.pool.query(PRUNE_RUNS_SQL, [def.name, RUNS_KEPT]);
    try {
      const stats = await runSource(def, { ...opts, leaseLost });
      const result = stats.skipped ? 'skipped' : 'succeeded';
      await opts.pool.query(
        `UPDATE pull_runs SET finished_at = clock_timestamp(), status = $2, stats = $3 WHERE id = $1`,
        [runId, result, JSON.stringify(stats)],
      );
      opts.metrics?.run(def.name, result);
      return stats;
    } catch (error) {
      // A run ended by a stop is not a failure: every deploy would look like one.
      const result = opts.signal?.aborted ? 'stopped' : 'failed';
      opts.metrics?.run(def.name, result);
      await opts.pool
        .query(`UPDATE pull_runs SET finished_at = clock_timestamp(), status = $2, error = $3 WHERE id = $1`, [
          runId,
          result,
          (error as Error).message,
        ])
        .catch(() => undefined);
      throw error;
    }
  });
}

export interface SchedulerOptions extends PullOptions {
  onRun?: (source: string, outcome: RunStats | Error) => void;
  random?: () => number;
}

/**
 * Runs every source on its own interval (± jitter) until the signal aborts. A source whose lease is
 * held elsewhere is skipped this round, so runs of one source never overlap across processes.
 */
export async function runScheduler(defs: SourceDefinition[], opts: SchedulerOptions): Promise<void> {
  const random = opts.random ?? Math.random;
  const sleep = (ms: number) => delay(ms, undefined, { signal: opts.signal }).catch(() => undefined);
  await Promise.all(
    defs.map(async (def) => {
      while (!opts.signal?.aborted) {
        try {
          opts.onRun?.(def.name, await pullOnce(def, { ...opts, waitLeaseMs: 0 }));
        } catch (error) {
          if (!(error instanceof LeaseBusyError) && !opts.signal?.aborted) opts.onRun?.(def.name, error as Error);
        }
        const jitter = (random() * 2 - 1) * def.schedule.jitter_ms;
        let wait = Math.max(0, def.schedule.every_ms + jitter);
        const notBefore = (await loadCheckpoint(opts.pool, def.name).catch(() => ({ not_before: undefined })))
          .not_before;
        if (notBefore) wait = Math.max(wait, Date.parse(notBefore) - Date.now());
        await sleep(wait);
      }
    }),
  );
}
