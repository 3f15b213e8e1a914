import { afterAll, describe, expect, it } from 'vitest';
import { type Queryable, withTransaction } from '../../libs/db/index.ts';
import { appendEvents, type NewEvent, OutboxInputError, shardOf, topicFor } from '../../libs/outbox/index.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';

const pool = testPool(20);
afterAll(() => pool.end());

function event(source: string, eventId: string, entityKey = 'k1'): NewEvent {
  return {
    source,
    eventId,
    eventType: 'thing.updated',
    entityKey,
    eventTime: new Date('2026-11-01T10:00:00Z'),
    payload: { id: eventId, n: 1 },
    lineage: { delivery: `d-${eventId}` },
  };
}

async function counts(source: string) {
  const { rows } = await pool.query(
    `SELECT (SELECT count(*)::int FROM raw_events WHERE source = $1) AS raw,
            (SELECT count(*)::int FROM outbox WHERE source = $1) AS outbox`,
    [source],
  );
  return rows[0] as { raw: number; outbox: number };
}

describe('appendEvents', () => {
  it('answers ACCEPTED for new events and DUPLICATE for repeats, creating one outbox row per event', async () => {
    const source = uniqueName('append');
    const first = await withTransaction(pool, (c) =>
      appendEvents(c, [event(source, 'a'), event(source, 'b'), event(source, 'a')]),
    );
    expect(first.map((r) => r.status)).toEqual(['ACCEPTED', 'ACCEPTED', 'DUPLICATE']);
    const again = await withTransaction(pool, (c) => appendEvents(c, [event(source, 'b'), event(source, 'c')]));
    expect(again.map((r) => r.status)).toEqual(['DUPLICATE', 'ACCEPTED']);
    expect(await counts(source)).toEqual({ raw: 3, outbox: 3 });

    const { rows } = await pool.query('SELECT event_id, topic, shard FROM outbox WHERE source = $1 ORDER BY id', [
      source,
    ]);
    expect(rows).toEqual(
      ['a', 'b', 'c'].map((id) => ({ event_id: id, topic: topicFor(source), shard: shardOf('k1') })),
    );
  });

  it('uses one round trip for a whole batch', async () => {
    const source = uniqueName('append-batch');
    let queries = 0;
    const client = await pool.connect();
    const counting: Queryable = {
      query: ((...args: Parameters<Queryable['query']>) => {
        queries++;
        return (client.query as (...a: unknown[]) => unknown)(...args);
      }) as Queryable['query'],
    };
    try {
      const events = Array.from({ length: 1000 }, (_, i) => event(source, `e${i}`, `key-${i % 37}`));
      const results = await appendEvents(counting, events);
      expect(results.filter((r) => r.status === 'ACCEPTED')).toHaveLength(1000);
      expect(queries).toBe(1);
    } finally {
      client.release();
    }
    const { rows } = await pool.query('SELECT event_id FROM outbox WHERE source = $1 ORDER BY id', [source]);
    expect(rows.map((r) => r.event_id)).toEqual(Array.from({ length: 1000 }, (_, i) => `e${i}`));
  });

  it('writes nothing when the caller rolls back, so an event is stored with its outbox row or not at all', async () => {
    const source = uniqueName('append-rollback');
    await expect(
      withTransaction(pool, async (c) => {
        await appendEvents(c, [event(source, 'x')]);
        throw new Error('caller failed after appending');
      }),
    ).rejects.toThrow('caller failed');
    expect(await counts(source)).toEqual({ raw: 0, outbox: 0 });
  });

  it('refuses bad input naming the event and field, and writes nothing of the batch', async () => {
    const source = uniqueName('append-bad');
    const bad = [
      [{ eventId: '' }, 'event[1].eventId'],
      [{ eventTime: new Date('nope') }, 'event[1].eventTime'],
      [{ payload: [] as unknown as Record<string, unknown> }, 'event[1].payload'],
      [{ payload: { text: 'nul \u0000 inside' } }, 'event[1].payload'],
      [{ payload: { text: 'half \ud800 a pair' } }, 'event[1].payload'],
      [{ payload: { 'key \udc00': 1 } }, 'event[1].payload'],
      [{ entityKey: 'e\udc00' }, 'event[1].entityKey'],
      [{ source: 'has space' }, 'event[1].source'],
    ] as const;
    for (const [override, field] of bad) {
      const error = await withTransaction(pool, (c) =>
        appendEvents(c, [event(source, 'ok'), { ...event(source, 'bad'), ...override }]),
      ).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(OutboxInputError);
      expect((error as Error).message).toContain(field);
    }
    expect(await counts(source)).toEqual({ raw: 0, outbox: 0 });
  });

  it('stores whole surrogate pairs, and text that only looks like an escape', async () => {
    const source = uniqueName('append-unicode');
    const payload = { emoji: '\ud83d\ude00', text: 'a literal \\ud800 and \\u0000' };
    await withTransaction(pool, (c) =>
      appendEvents(c, [{ ...event(source, 'u'), entityKey: 'k\ud83d\ude00', payload }]),
    );
    const { rows } = await pool.query('SELECT payload, entity_key FROM raw_events WHERE source = $1', [source]);
    expect(rows).toEqual([{ payload, entity_key: 'k\ud83d\ude00' }]);
  });

  it('refuses a NUL in the payload of a repeat inside the batch too', async () => {
    const source = uniqueName('append-nul-repeat');
    const repeat = { ...event(source, 'same'), payload: { text: 'nul \u0000 inside' } };
    const error = await withTransaction(pool, (c) => appendEvents(c, [event(source, 'same'), repeat])).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(OutboxInputError);
    expect((error as Error).message).toContain('event[1].payload');
    expect(await counts(source)).toEqual({ raw: 0, outbox: 0 });
  });

  it('the same event appended 50 times at once is stored once with one outbox row', async () => {
    const source = uniqueName('append-race');
    const results = await Promise.all(
      Array.from({ length: 50 }, () => withTransaction(pool, (c) => appendEvents(c, [event(source, 'same')]))),
    );
    const statuses = results.flat().map((r) => r.status);
    expect(statuses.filter((s) => s === 'ACCEPTED')).toHaveLength(1);
    expect(statuses.filter((s) => s === 'DUPLICATE')).toHaveLength(49);
    expect(await counts(source)).toEqual({ raw: 1, outbox: 1 });
  });
});
