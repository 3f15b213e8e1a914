import { describe, expect, it } from 'vitest';
import { SeenCache } from '../../services/webhook/seen-cache.ts';

describe('SeenCache', () => {
  it('keeps the last `size` distinct keys, first in first out', () => {
    const cache = new SeenCache(3);
    expect(cache.empty).toBe(true);
    for (const key of ['a', 'b', 'a', 'c', 'd']) cache.add(key);
    expect(['a', 'b', 'c', 'd'].map((k) => cache.has(k))).toEqual([false, true, true, true]);
    for (let i = 0; i < 10; i++) cache.add(`k${i}`);
    expect(['k6', 'k7', 'k8', 'k9', 'd'].map((k) => cache.has(k))).toEqual([false, true, true, true, false]);
  });

  it('remembers nothing with size 0', () => {
    const cache = new SeenCache(0);
    cache.add('a');
    expect(cache.empty).toBe(true);
    expect(cache.has('a')).toBe(false);
  });
});
