import { describe, expect, it } from 'vitest';
import type { AppendResult, NewEvent } from '../../libs/outbox/index.ts';
import { GroupCommitter } from '../../services/webhook/group-commit.ts';

/** Pure logic: a fake store that records each statement's events and can refuse a marked event. */
function fakeStore() {
  const statements: string[][] = [];
  const release: Array<() => void> = [];
  const store = (events: NewEvent[]): Promise<AppendResult[]> => {
    statements.push(events.map((e) => e.eventId));
    return new Promise((resolve, reject) => {
      release.push(() =>
        events.some((e) => e.eventId.startsWith('bad'))
          ? reject(new Error('refused'))
          : resolve(events.map((e) => ({ eventId: e.eventId, status: 'ACCEPTED' }))),
      );
    });
  };
  const flushAll = async () => {
    while (release.length > 0) {
      release.shift()!();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { store, statements, flushAll };
}

const ev = (id: string) => ({ eventId: id }) as NewEvent;

describe('GroupCommitter', () => {
  it('combines requests that wait for a connection into one statement and splits the answers', async () => {
    const fake = fakeStore();
    const committer = new GroupCommitter(fake.store, 1, 100);
    const first = committer.submit([ev('a')]);
    const second = committer.submit([ev('b'), ev('c')]);
    const third = committer.submit([ev('d')]);
    expect(committer.saturated(2)).toBe(true);
    await fake.flushAll();
    expect(fake.statements).toEqual([['a'], ['b', 'c', 'd']]);
    expect((await second).map((r) => r.eventId)).toEqual(['b', 'c']);
    expect((await third).map((r) => r.eventId)).toEqual(['d']);
    expect((await first).map((r) => r.eventId)).toEqual(['a']);
  });

  it('never splits a request, respects the size cap, and retries requests alone when a group fails', async () => {
    const fake = fakeStore();
    const committer = new GroupCommitter(fake.store, 1, 3);
    const answers = [
      committer.submit([ev('a')]),
      committer.submit([ev('b'), ev('c')]),
      committer.submit([ev('bad-1')]),
      committer.submit([ev('e'), ev('f'), ev('g')]),
    ].map((p) => p.then((r) => r.map((x) => x.eventId)).catch((e: Error) => e.message));
    await fake.flushAll();
    expect(fake.statements).toEqual([['a'], ['b', 'c', 'bad-1'], ['b', 'c'], ['bad-1'], ['e', 'f', 'g']]);
    expect(await Promise.all(answers)).toEqual([['a'], ['b', 'c'], 'refused', ['e', 'f', 'g']]);
  });
});
