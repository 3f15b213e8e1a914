import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { loadCheckpoint, PageError, runSource } from '../../services/puller/engine.ts';
import { pullOnce, RUNS_KEPT } from '../../services/puller/runner.ts';
import { testPool } from '../helpers/real-stack.ts';
import { changeFeedDefinition, definition, eventIds, outboxCounts, takeLease } from './helpers.ts';

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({ items: 300, events: 200 });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

async function run(raw: Record<string, unknown>) {
  const def = definition(raw);
  const owner = await takeLease(pool, def.name);
  return runSource(def, { pool, owner });
}

describe('ascending cursor source', () => {
  it('ingests every record once and resumes from the committed cursor', async () => {
    const raw = changeFeedDefinition(sim.url);
    const first = await run(raw);
    expect(first.accepted).toBe(sim.items.size);
    expect(first.pages).toBe(Math.ceil(sim.items.size / 50) + 1);
    const second = await run(raw);
    expect(second.accepted).toBe(0);
    expect(second.pages).toBe(1);
    expect(await outboxCounts(pool, String(raw.name))).toEqual({ rows: sim.items.size, distinct: sim.items.size });
  });

  it('ingests every version served while records are inserted and updated during paging, each once', async () => {
    const raw = changeFeedDefinition(sim.url, {
      request: { base_url: sim.url, path: '/api/changes', params: { limit: 25 } },
    });
    sim.resetStats();
    sim.faults.mutatePerPage = { inserts: 2, updates: 4 };
    try {
      await run(raw);
    } finally {
      delete sim.faults.mutatePerPage;
    }
    await run(raw);
    const ids = await eventIds(pool, String(raw.name));
    expect(new Set(ids).size).toBe(ids.length);
    expect(new Set(ids)).toEqual(sim.stats.served);
    // The final version of every item is among them: nothing was skipped.
    for (const item of sim.items.values()) expect(ids).toContain(`${item.id}@${item.updated_at}`);
    const counts = await outboxCounts(pool, String(raw.name));
    expect(counts.rows).toBe(ids.length);
  });

  it('waits out a 429 storm, sending nothing before Retry-After', async () => {
    const raw = changeFeedDefinition(sim.url);
    sim.resetStats();
    sim.faults.storm = { requests: 2, retryAfterS: 1 };
    const stats = await run(raw);
    expect(stats.accepted).toBe(sim.items.size);
    expect(stats.throttled).toBe(2);
    expect(sim.stats.byStatus[429]).toBe(2);
    const [t0, t1, t2] = sim.stats.times;
    expect(t1! - t0!).toBeGreaterThanOrEqual(1000);
    expect(t2! - t1!).toBeGreaterThanOrEqual(1000);
  });

  it('adapts to the X-RateLimit-Remaining / Reset quota the server announces, receiving no 429', async () => {
    const raw = changeFeedDefinition(sim.url, { rate_limit: { per_second: 1000, burst: 100 } });
    sim.resetStats();
    sim.faults.quota = { limit: 4, windowMs: 1000 };
    try {
      const stats = await run(raw);
      expect(stats.accepted).toBe(sim.items.size);
    } finally {
      delete sim.faults.quota;
    }
    expect(sim.stats.requests).toBeGreaterThan(4);
    expect(sim.stats.byStatus[429]).toBeUndefined();
  });

  it('fails on a malformed page naming the URL, without moving the checkpoint', async () => {
    const raw = changeFeedDefinition(sim.url, { max_pages: 2 });
    await run(raw);
    const before = await loadCheckpoint(pool, String(raw.name));
    expect(before.cursor).toBeTruthy();
    sim.faults.malformed = 1;
    const failed = run({ ...raw, max_pages: undefined });
    await expect(failed).rejects.toThrow(PageError);
    await expect(failed).rejects.toThrow(`${sim.url}/api/changes?limit=50&cursor=${before.cursor}`);
    expect(await loadCheckpoint(pool, String(raw.name))).toEqual(before);
    const resumed = await run({ ...raw, max_pages: undefined });
    expect(resumed.accepted).toBe(sim.items.size - 100);
  });

  it('quarantines a record without primary key or with an unparseable time, with the reason', async () => {
    const raw = changeFeedDefinition(sim.url, { max_pages: 1 });
    sim.faults.badRecords = true;
    const stats = await run(raw);
    expect(stats.quarantined).toBe(2);
    expect(stats.accepted).toBe(50);
    const { rows } = await pool.query<{ reason: string; url: string }>(
      'SELECT reason, url FROM pull_quarantine WHERE source = $1 ORDER BY id',
      [raw.name],
    );
    expect(rows.map((r) => r.reason)).toEqual([
      'primary key id is missing or not a string/number',
      'updated_at is missing or not a time: "yesterday-ish"',
    ]);
    expect(rows[0]!.url).toContain('/api/changes');

    // The same page read again (a cursor feed re-reads its last page until it moves on): the bad
    // records are found again but quarantined once.
    await pool.query('DELETE FROM pull_checkpoints WHERE source = $1', [raw.name]);
    sim.faults.badRecords = true;
    expect((await run(raw)).quarantined).toBe(2);
    const again = await pool.query('SELECT 1 FROM pull_quarantine WHERE source = $1', [raw.name]);
    expect(again.rowCount).toBe(2);
  });
});

describe('run history', () => {
  it('keeps the last runs of a source and its latest success, not every run ever', async () => {
    const raw = changeFeedDefinition(sim.url, { max_pages: 1 });
    const def = definition(raw);
    // One old success, then more failed runs than are kept.
    await pool.query(
      `INSERT INTO pull_runs (source, owner, finished_at, status)
       SELECT $1, 'test', now() - interval '2 days', 'succeeded'
       UNION ALL SELECT $1, 'test', now(), 'failed' FROM generate_series(1, $2::int + 50)`,
      [def.name, RUNS_KEPT],
    );
    await pullOnce(def, { pool, owner: 'history-test', leaseTtlMs: 30_000, waitLeaseMs: 0 });
    const { rows } = await pool.query<{ status: string; n: number }>(
      'SELECT status, count(*)::integer AS n FROM pull_runs WHERE source = $1 GROUP BY status ORDER BY status',
      [def.name],
    );
    // The kept runs (the one just made among them), all succeeded or failed, and the old success.
    expect(rows).toEqual([
      { status: 'failed', n: RUNS_KEPT - 1 },
      { status: 'succeeded', n: 2 },
    ]);
  });
});

describe('watermark source (offset pagination, updated_after, look-back)', () => {
  const watermarkDefinition = () =>
    changeFeedDefinition(sim.url, {
      request: { base_url: sim.url, path: '/api/items', params: {} },
      records: {
        path: 'items',
        primary_key: 'id',
        event_time: 'created_at',
        updated_at: 'updated_at',
        event_type: 'item.changed',
      },
      pagination: { type: 'offset', limit: 100 },
      incremental: { type: 'watermark', param: 'updated_after', lookback: '10s' },
    });

  it('commits the watermark after the run, catches late updates within the look-back, keeps newer versions and refuses older ones', async () => {
    const raw = watermarkDefinition();
    // Runs start in a later second (the server's Date header) than the last change: nothing is counted
    // as changed during the run, which would hold the watermark back (see the watermark tests).
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const first = await run(raw);
    expect(first.accepted).toBe(sim.items.size);
    const newest = [...sim.items.values()].reduce((a, b) => (a.updated_at > b.updated_at ? a : b));
    expect(first.checkpoint.watermark).toBe(newest.updated_at);

    await new Promise((resolve) => setTimeout(resolve, 1200));
    const [two] = sim.update([2]);
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const second = await run(raw);
    expect(second.accepted).toBe(1);
    const watermark = Date.parse(two!.updated_at);
    expect(second.checkpoint.watermark).toBe(two!.updated_at);

    // An update of item 1 that reaches the API late: older than the watermark, inside the look-back.
    const late = sim.lateUpdate(1, new Date(watermark - 500));
    const third = await run(raw);
    expect(third.accepted).toBe(1);
    expect(await eventIds(pool, String(raw.name))).toContain(`1@${late.updated_at}`);

    // An older version of item 2 re-delivered after the newer one is not kept.
    const older = sim.lateUpdate(2, new Date(watermark - 200));
    const fourth = await run(raw);
    expect(fourth.stale).toBe(1);
    expect(fourth.accepted).toBe(0);
    expect(await eventIds(pool, String(raw.name))).not.toContain(`2@${older.updated_at}`);
  });
});

describe('GitHub-style events (newest first, Link, ETag, X-Poll-Interval)', () => {
  const githubDefinition = (name: string) => ({
    name,
    request: { base_url: sim.url, path: '/events', params: { per_page: 50 } },
    records: { path: '', primary_key: 'id', event_time: 'created_at', event_type_field: 'type' },
    pagination: { type: 'link' },
    incremental: { type: 'newest_first', field: 'id' },
    etag: true,
    poll_interval_header: 'X-Poll-Interval',
  });

  it('pages to the watermark, answers 304 to an unchanged feed and honours the poll interval', async () => {
    const raw = githubDefinition('gh-events-test');
    sim.faults.pollIntervalS = 1;
    const first = await run(raw);
    expect(first.accepted).toBe(sim.events.length);
    expect(first.pages).toBe(4);
    expect(first.checkpoint.etag).toBeTruthy();

    const early = await run(raw);
    expect(early.skipped).toMatch(/asked not to poll before/);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    const unchanged = await run(raw);
    expect(unchanged.notModified).toBe(true);
    expect(unchanged.accepted).toBe(0);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    sim.addEvents(10);
    const next = await run(raw);
    expect(next.accepted).toBe(10);
    expect(next.pages).toBe(1);
    expect(next.checkpoint.watermark).toBe(sim.events[0]!.id);
  });

  it('keeps the watermark when max_pages stops the run before it, so the next run fills the gap', async () => {
    const raw = { ...githubDefinition(`gh-gap-${Date.now()}`), etag: false, poll_interval_header: undefined };
    const first = await run(raw);
    expect(first.accepted).toBe(sim.events.length);
    const watermark = first.checkpoint.watermark;
    sim.addEvents(120);
    const cut = await run({ ...raw, max_pages: 1 });
    expect(cut).toMatchObject({ pages: 1, accepted: 50 });
    expect(cut.checkpoint.watermark).toBe(watermark);
    expect(cut.warning).toMatch(/max_pages \(1\) reached before the last committed key/);
    const rest = await run(raw);
    expect(rest).toMatchObject({ accepted: 70 });
    expect(rest.checkpoint.watermark).toBe(sim.events[0]!.id);
    expect((await eventIds(pool, raw.name)).length).toBe(sim.events.length);
  });
});
