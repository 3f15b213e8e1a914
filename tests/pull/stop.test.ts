import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { PgTokenBucket } from '../../libs/ratelimit/index.ts';
import { pullOnce } from '../../services/puller/runner.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';
import { changeFeedDefinition, definition, eventIds } from './helpers.ts';

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({ items: 20 });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

describe('stopping a run (SIGTERM)', () => {
  it('ends a run waiting on a shared bucket that another process blocked, without a request sent', async () => {
    const bucket = uniqueName('stop-bucket');
    const def = definition(
      changeFeedDefinition(sim.url, {
        rate_limit: { per_second: 10, burst: 10, bucket },
        retry: { max_attempts: 3, deadline: '5m' },
      }),
    );
    // Another instance of the source was told Retry-After: 120: every instance waits for the bucket.
    const shared = new PgTokenBucket(pool, { name: bucket, ratePerSecond: 10, burst: 10 });
    await shared.acquire();
    await shared.block(120_000);
    sim.resetStats();
    const stop = new AbortController();
    const run = pullOnce(def, { pool, owner: 'stop-test', leaseTtlMs: 30_000, waitLeaseMs: 0, signal: stop.signal });
    run.catch(() => undefined);
    await new Promise((resolve) => setTimeout(resolve, 300));
    stop.abort(new Error('stopping on SIGTERM'));
    // Without the signal reaching the client this waits the 120 s out, past the test's timeout.
    await expect(run).rejects.toThrow('stopping on SIGTERM');
    expect(sim.stats.requests).toBe(0);
    expect(await eventIds(pool, def.name)).toEqual([]);
    // A stop is not a failure: a deploy would otherwise look like failed runs.
    const { rows } = await pool.query('SELECT status FROM pull_runs WHERE source = $1', [def.name]);
    expect(rows).toEqual([{ status: 'stopped' }]);
  });
});
