import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { loadDefinitionFile } from '../../services/puller/definition.ts';
import { PageError, runSource } from '../../services/puller/engine.ts';
import { testPool } from '../helpers/real-stack.ts';
import { definition, outboxCounts, takeLease } from './helpers.ts';

const EXAMPLE = path.resolve(import.meta.dirname, '../../services/puller/examples/stripe-events.yaml');
const KEY = 'sk_test_simulated';

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  // A second apart, two hours ago: the look-back (5 min) re-reads only the newest 300 events.
  sim = await startSimulator({ items: 450, clockStart: new Date(Date.now() - 2 * 3600_000), faults: { token: KEY } });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

describe('Stripe events, from the example definition (starting_after pages, created[gte] watermark)', () => {
  const env = () => ({ ...process.env, STRIPE_API_URL: sim.url, STRIPE_API_KEY: KEY });

  it('pages until has_more is false, then asks only for events since the watermark; each event once', async () => {
    const def = await loadDefinitionFile(EXAMPLE, env());
    const owner = await takeLease(pool, def.name);
    const first = await runSource(def, { pool, owner, env: env() });
    expect([first.accepted, first.pages]).toEqual([450, 5]);
    const newest = sim.stripeEvents.at(-1)!;
    expect(first.checkpoint.watermark).toBe(new Date(newest.created * 1000).toISOString());

    sim.update([1, 2, 3]);
    sim.insert(4);
    sim.resetStats();
    const second = await runSource(def, { pool, owner, env: env() });
    expect(second.accepted).toBe(7);
    // created[gte] = watermark - 5 min - 1 ms, in epoch seconds: the last 302 events again (duplicates), not all 450.
    expect(second.duplicates).toBe(302);
    expect(second.pages).toBe(4);
    expect(await outboxCounts(pool, def.name)).toEqual({ rows: 457, distinct: 457 });
  });

  it('names a missing key, and a page without has_more, without moving the checkpoint', async () => {
    const owner = await takeLease(pool, 'stripe-events-broken');
    const run = (raw: Record<string, unknown>, extraEnv: NodeJS.ProcessEnv = env()) =>
      runSource(definition({ ...raw, name: 'stripe-events-broken' }), { pool, owner, env: extraEnv });
    const raw = {
      request: { base_url: sim.url, path: '/v1/events', params: { limit: 100 } },
      auth: { type: 'bearer', token_env: 'STRIPE_API_KEY' },
      records: { path: 'data', primary_key: 'id', event_time: 'created', event_type_field: 'type' },
    };
    await expect(run({ ...raw, pagination: { type: 'after_last' } }, { STRIPE_API_KEY: '' })).rejects.toThrow(
      'auth.token_env: environment variable STRIPE_API_KEY is not set',
    );
    const noHasMore = run({ ...raw, pagination: { type: 'after_last', has_more_path: 'more' } });
    await expect(noHasMore).rejects.toThrow(PageError);
    await expect(noHasMore).rejects.toThrow('more is not true or false; checkpoint not moved');
  });
});
