import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { loadCheckpoint, PageError, runSource } from '../../services/puller/engine.ts';
import { testPool } from '../helpers/real-stack.ts';
import { changeFeedDefinition, definition, eventIds, outboxCounts, takeLease } from './helpers.ts';

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({ items: 230 });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

/** /api/pages: page number and per_page, records in `results`, ends on a short page. */
const pageDefinition = (incremental: Record<string, unknown>) =>
  changeFeedDefinition(sim.url, {
    request: { base_url: sim.url, path: '/api/pages', params: {} },
    records: {
      path: 'results',
      primary_key: 'id',
      event_time: 'created_at',
      updated_at: 'updated_at',
      event_type: 'item.changed',
    },
    pagination: { type: 'page', page_param: 'page', size_param: 'per_page', size: 50 },
    incremental,
  });

async function run(raw: Record<string, unknown>) {
  const def = definition(raw);
  return runSource(def, { pool, owner: await takeLease(pool, def.name) });
}

describe('page-number pagination', () => {
  it('reads every record once, stopping at the short page; without incremental each run re-reads and dedupe absorbs it', async () => {
    const raw = pageDefinition({ type: 'none' });
    sim.resetStats();
    const first = await run(raw);
    expect(first.pages).toBe(5);
    expect(first.records).toBe(230);
    expect(first.accepted).toBe(230);
    expect(new Set(await eventIds(pool, String(raw.name)))).toEqual(sim.stats.served);
    expect(first.checkpoint).toEqual({});

    const again = await run(raw);
    expect(again).toMatchObject({ pages: 5, accepted: 0, duplicates: 230 });
    expect(await outboxCounts(pool, String(raw.name))).toEqual({ rows: 230, distinct: 230 });
  });

  it('with a watermark: committed only after the whole run, so a failed page leaves it unmoved and the rerun fills the gap', async () => {
    const raw = pageDefinition({ type: 'watermark', param: 'updated_after', lookback: '0s' });
    const full = { ...raw, max_pages: undefined };
    // Runs start in a later second (the server's Date header) than the last change, so nothing counts as
    // changed during the run (which would hold the watermark back to the first page).
    const nextSecond = () => new Promise((resolve) => setTimeout(resolve, 1100));
    await nextSecond();
    const firstTwo = await run({ ...raw, max_pages: 2 });
    expect(firstTwo).toMatchObject({ pages: 2, accepted: 100 });
    const watermarkAfterTwo = (await loadCheckpoint(pool, String(raw.name))).watermark;
    expect(watermarkAfterTwo).toBeTruthy();

    // A run that fails on its second page: what it stored stays, the watermark stays where it was.
    await expect(
      (async () => {
        const def = definition(full);
        const owner = await takeLease(pool, def.name);
        let pages = 0;
        return runSource(def, {
          pool,
          owner,
          onPage: () => {
            pages++;
            if (pages === 1) sim.faults.malformed = 1;
          },
        });
      })(),
    ).rejects.toThrow(PageError);
    expect((await loadCheckpoint(pool, String(raw.name))).watermark).toBe(watermarkAfterTwo);

    const rerun = await run(full);
    // Asked from 1 ms before the watermark, each run's first page starts with the record on it (already
    // stored): the failed run stored 49 new records, which the rerun's first page reads again.
    expect(rerun).toMatchObject({ accepted: 230 - 100 - 49, duplicates: 50 });
    const newest = [...sim.items.values()].reduce((a, b) => (a.updated_at > b.updated_at ? a : b));
    expect(rerun.checkpoint.watermark).toBe(newest.updated_at);
    expect(await outboxCounts(pool, String(raw.name))).toEqual({ rows: 230, distinct: 230 });

    // Only changes after the watermark are asked for: one short page.
    sim.update([3, 4]);
    sim.insert(1);
    await nextSecond();
    const next = await run(full);
    expect(next).toMatchObject({ pages: 1, records: 4, accepted: 3, duplicates: 1 });
    expect(next.checkpoint.watermark).toBe(
      [...sim.items.values()].reduce((a, b) => (a.updated_at > b.updated_at ? a : b)).updated_at,
    );
  });
});
