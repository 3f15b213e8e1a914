import { afterAll, describe, expect, it } from 'vitest';
import type { LakeEvent } from '../../libs/lake/event.ts';
import { claimEvents, expireClaims } from '../../services/sink/dedupe.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';

function events(source: string, ids: number[], partition: number, firstOffset = 0): LakeEvent[] {
  return ids.map((id, i) => ({
    eventId: `${source}-${id}`,
    source,
    eventType: 't',
    entityKey: 'k',
    eventTime: 0,
    ingestedAt: 0,
    updatedAt: 0,
    payload: '{}',
    lineage: {},
    topic: `conveyor.${source}`,
    partition,
    offset: String(firstOffset + i),
  }));
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const ids = (list: LakeEvent[]) => list.map((e) => e.eventId).sort();

describe('dedupe claims (Postgres)', () => {
  const pool = testPool(8);
  afterAll(() => pool.end());

  it('keeps a record that finds its own claim (a replay) and drops one at another position', async () => {
    const source = uniqueName('claims');
    const first = await claimEvents(pool, events(source, range(0, 100), 0));
    expect(first.kept).toHaveLength(100);
    // The same records again, as after a crash or a replay from offset 0: all kept.
    const replay = await claimEvents(pool, events(source, range(0, 100), 0));
    expect([replay.kept.length, replay.duplicates.length]).toEqual([100, 0]);
    // Re-published at other offsets (and partly new): the old ids are duplicates, the new ones kept.
    const republished = await claimEvents(pool, events(source, range(50, 150), 1, 1000));
    expect(ids(republished.duplicates)).toEqual(ids(events(source, range(50, 100), 1)));
    expect(ids(republished.kept)).toEqual(ids(events(source, range(100, 150), 1)));
    // A claimed id after new ones: the insert of them all fails at its last row and is undone whole;
    // the new ones are still claimed, once each.
    const lateConflict = await claimEvents(pool, events(source, [...range(200, 250), 0], 2, 5000));
    expect(ids(lateConflict.kept)).toEqual(ids(events(source, range(200, 250), 2)));
    expect(ids(lateConflict.duplicates)).toEqual([`${source}-0`]);
    const { rows } = await pool.query<{ n: number }>(
      'SELECT count(*)::integer AS n FROM sink_claims WHERE source = $1 AND kafka_partition = 2',
      [source],
    );
    expect(rows[0]!.n).toBe(50);
  });

  it('gives each event one owner when sinks claim the same ids at the same time', async () => {
    const source = uniqueName('claims-race');
    for (let round = 0; round < 10; round++) {
      const batch = range(round * 500, round * 500 + 500);
      // Four "sinks" on four partitions carry overlapping ids at once; some statements collide.
      const results = await Promise.all(
        [0, 1, 2, 3].map((p) => claimEvents(pool, events(source, batch.slice(p * 50), p, round * 1000))),
      );
      const owners = results.flatMap((r) => r.kept.map((e) => e.eventId));
      expect(owners.sort()).toEqual(ids(events(source, batch, 0)));
      const { rows } = await pool.query<{ n: number }>(
        'SELECT count(*)::integer AS n FROM sink_claims WHERE source = $1',
        [source],
      );
      expect(rows[0]!.n).toBe((round + 1) * 500);
    }
  });
  it('expires every claim past the retention in one run, however many batches that takes, and no other', async () => {
    const source = uniqueName('claims-expiry');
    // 25,000 claims eight days old and 100 fresh ones; one run with batches of 10,000 must take all
    // the old ones (a run that stopped after one batch fell behind any real ingest rate).
    await pool.query(
      `INSERT INTO sink_claims (source, event_id, topic, kafka_partition, kafka_offset, claimed_at)
       SELECT $1, 'old-' || n, 'conveyor.' || $1, 0, n, now() - interval '8 days' FROM generate_series(1, 25000) n
       UNION ALL
       SELECT $1, 'new-' || n, 'conveyor.' || $1, 0, 100000 + n, now() FROM generate_series(1, 100) n`,
      [source],
    );
    const count = async (prefix: string) =>
      (
        await pool.query<{ n: number }>(
          'SELECT count(*)::integer AS n FROM sink_claims WHERE source = $1 AND event_id LIKE $2',
          [source, `${prefix}%`],
        )
      ).rows[0]!.n;

    // Stopped after its first statement (the sink is shutting down): one batch went, the rest waits.
    expect(await expireClaims(pool, 7, { batch: 10_000, pauseMs: 0, stopped: () => true })).toBe(10_000);
    expect(await count('old-')).toBeGreaterThanOrEqual(15_000);

    const removed = await expireClaims(pool, 7, { batch: 10_000, pauseMs: 0 });
    expect(removed).toBeGreaterThanOrEqual(15_000);
    expect(await count('old-')).toBe(0);
    expect(await count('new-')).toBe(100);
    // The fresh claims still catch copies: a re-publication of one of them is a duplicate.
    const copy = events(source, [0], 3, 7).map((e) => ({ ...e, eventId: 'new-1' }));
    expect((await claimEvents(pool, copy)).duplicates).toHaveLength(1);
  });
});
