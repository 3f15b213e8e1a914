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
const itemsDefinition = (lookback: string, limit = 50, api = sim) =>
  changeFeedDefinition(api.url, {
    request: { base_url: api.url, path: '/api/items', params: {} },
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

const nextSecond = () => new Promise((resolve) => setTimeout(resolve, 1100));

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

  it('never commits a watermark past the run start: a record dated 2099 does not hide the updates after it', async () => {
    const raw = itemsDefinition('0s');
    await run(raw);
    sim.lateUpdate(3, new Date('2099-01-01T00:00:00.000Z'));
    const second = await run(raw);
    expect(second.accepted).toBe(1);
    expect(Date.parse(second.checkpoint.watermark!)).toBeLessThanOrEqual(Date.now());
    expect(second.warning).toMatch(
      /1 record\(s\) stamped at or after the run's start \(latest 2099-01-01T00:00:00.000Z\)/,
    );
    await nextSecond();
    const [four] = sim.update([4]);
    await nextSecond();
    const third = await run(raw);
    expect(third.accepted).toBe(1);
    expect(await eventIds(pool, String(raw.name))).toContain(`4@${four!.updated_at}`);
  });

  it('offset pages while records are updated: what the shifted offsets skipped is read by the next run', async () => {
    // Wall-clock stamps (the server's Date header and updated_at on one clock), every record older
    // than the run; no look-back, so only the watermark decides what the next run asks for.
    const api = await startSimulator({ items: 300 });
    try {
      await nextSecond();
      const raw = itemsDefinition('0s', 50, api);
      api.faults.mutatePerPage = { inserts: 0, updates: 3 };
      const first = await run(raw);
      delete api.faults.mutatePerPage;
      const current = () => [...api.items.values()].map((item) => `${item.id}@${item.updated_at}`);
      const afterFirst = new Set(await eventIds(pool, String(raw.name)));
      // Records updated behind the offset moved to the end and shifted others past it: some were skipped.
      expect(current().filter((id) => !afterFirst.has(id)).length).toBeGreaterThan(0);
      expect(first.warning).toMatch(/stamped at or after the run's start/);
      await nextSecond();
      const second = await run(raw);
      expect(second.warning).toBeUndefined();
      const ids = new Set(await eventIds(pool, String(raw.name)));
      expect(current().filter((id) => !ids.has(id))).toEqual([]);
      // Nothing changed since: the watermark reached the newest record.
      const newest = [...api.items.values()].reduce((a, b) => (a.updated_at > b.updated_at ? a : b));
      expect(second.checkpoint.watermark).toBe(newest.updated_at);
    } finally {
      await api.close();
    }
  });
});
