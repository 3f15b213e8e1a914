import { describe, expect, it } from 'vitest';
import { produceRequests } from '../../services/relay/relay.ts';

const message = (i: number, bytes: number) => ({ key: `k-${i}`, value: Buffer.alloc(bytes, i % 256), headers: {} });

describe('produceRequests', () => {
  it('splits a large transaction into requests under a MiB, keeping every record once and in order', () => {
    const a = Array.from({ length: 2000 }, (_, i) => message(i, 1200));
    const b = Array.from({ length: 300 }, (_, i) => message(i, 3000));
    const requests = produceRequests([
      { topic: 'a', messages: a },
      { topic: 'b', messages: b },
    ]);
    expect(requests.length).toBeGreaterThan(3);
    for (const request of requests) {
      const bytes = request.flatMap((t) => t.messages).reduce((sum, m) => sum + m.value.length, 0);
      expect(bytes).toBeLessThan(1024 * 1024);
    }
    const flat = (topic: string) =>
      requests
        .flat()
        .filter((t) => t.topic === topic)
        .flatMap((t) => t.messages);
    expect(flat('a')).toEqual(a);
    expect(flat('b')).toEqual(b);
  });

  it('sends a record larger than a request alone, and a small batch in one request', () => {
    const big = message(1, 2 * 1024 * 1024);
    expect(
      produceRequests([{ topic: 't', messages: [message(0, 10), big, message(2, 10)] }]).map(
        (r) => r[0]!.messages.length,
      ),
    ).toEqual([1, 1, 1]);
    expect(produceRequests([{ topic: 't', messages: [message(0, 10), message(1, 10)] }])).toHaveLength(1);
  });
});
