import { afterAll, describe, expect, it } from 'vitest';
import type { LakeEvent } from '../../libs/lake/event.ts';
import { claimEvents } from '../../services/sink/dedupe.ts';
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
});
