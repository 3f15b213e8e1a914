import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { runSource } from '../../services/puller/engine.ts';
import { testPool } from '../helpers/real-stack.ts';
import { changeFeedDefinition, definition, eventIds, takeLease } from './helpers.ts';

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({ items: 120 });
  // Every record stamped before the runs start, in an earlier second.
  await new Promise((resolve) => setTimeout(resolve, 1100));
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

/** /api/items: offset pagination, updated_after read as strictly after. */
const itemsDefinition = (lookback: string, limit = 50) =>
  changeFeedDefinition(sim.url, {
    request: { base_url: sim.url, path: '/api/items', params: {} },
    records: {
      path: 'items',
      primary_key: 'id',
      event_time: 'created_at',
      updated_at: 'updated_at',
      event_type: 'item',
    },
    pagination: { type: 'offset', limit },
    incremental: { type: 'watermark', param: 'updated_after', lookback },
  });

async function run(raw: Record<string, unknown>) {
  const def = definition(raw);
  return runSource(def, { pool, owner: await takeLease(pool, def.name) });
}

describe('watermark', () => {
  it('with no look-back still fetches a record stamped with the watermark itself that became visible after the run', async () => {
    const raw = itemsDefinition('0s');
    const first = await run(raw);
    expect(first.accepted).toBe(sim.items.size);
    const watermark = first.checkpoint.watermark!;
    const late = sim.lateUpdate(7, new Date(watermark));
    const second = await run(raw);
    expect(second.accepted).toBe(1);
    expect(await eventIds(pool, String(raw.name))).toContain(`7@${late.updated_at}`);
  });
});
