import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../libs/db/index.ts';
import { PacerWaitError } from '../../libs/http/index.ts';
import { PgTokenBucket, RateBucketConflictError } from '../../libs/ratelimit/index.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';

const WORKER = path.resolve(import.meta.dirname, 'acquire-worker.ts');
let pool: Pool;
beforeAll(() => {
  pool = testPool();
});
afterAll(() => pool.end());

function worker(args: string[]): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER, ...args], { env: process.env });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.on('close', (code) =>
      code === 0 ? resolve(out.trim().split('\n').map(Number)) : reject(new Error(`worker exit ${code}`)),
    );
  });
}

describe('PgTokenBucket', () => {
  it('holds the combined rate across processes', async () => {
    const name = uniqueName('bucket');
    const rate = 20;
    const burst = 2;
    const [a, b] = await Promise.all([
      worker([name, '30', String(rate), String(burst)]),
      worker([name, '30', String(rate), String(burst)]),
    ]);
    const all = [...a!, ...b!].sort((x, y) => x - y);
    expect(all).toHaveLength(60);
    // Over any stretch, the two processes together took no more than burst + rate * seconds tokens.
    for (let i = 0; i < all.length; i++) {
      for (let j = i + burst + 1; j < all.length; j++) {
        const allowed = burst + (rate * (all[j]! - all[i]!)) / 1000;
        expect(j - i + 1, `tokens ${i}..${j} in ${all[j]! - all[i]!} ms`).toBeLessThanOrEqual(allowed + 1);
      }
    }
  });

  it('pauses every holder until the server reset after a 429 or an exhausted quota', async () => {
    const bucket = new PgTokenBucket(pool, { name: uniqueName('bucket'), ratePerSecond: 100, burst: 10 });
    expect(await bucket.reserve()).toBe(0);
    await bucket.observe(429, { 'retry-after': '1' });
    const other = new PgTokenBucket(pool, bucket.spec);
    expect(await other.reserve()).toBeGreaterThan(900);
    const quota = new PgTokenBucket(pool, { name: uniqueName('bucket'), ratePerSecond: 100, burst: 10 });
    await quota.observe(200, {
      'x-ratelimit-remaining': '0',
      'x-ratelimit-reset': String(Math.ceil(Date.now() / 1000) + 2),
    });
    expect(await quota.reserve()).toBeGreaterThan(1000);
  });

  it('reads an epoch-milliseconds reset as milliseconds: the pause ends at the reset, not in 50,000 years', async () => {
    const quota = new PgTokenBucket(pool, { name: uniqueName('bucket'), ratePerSecond: 100, burst: 10 });
    await quota.observe(200, { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(Date.now() + 2000) });
    const wait = await quota.reserve();
    expect(wait).toBeGreaterThan(1000);
    expect(wait).toBeLessThan(3000);
  });

  it('refuses a wait longer than maxWaitMs before it starts, taking no token', async () => {
    const bucket = new PgTokenBucket(pool, { name: uniqueName('bucket'), ratePerSecond: 1, burst: 1 });
    expect(await bucket.reserve(0)).toBe(0);
    // The next token comes in ~1 s.
    await expect(bucket.reserve(500)).rejects.toThrow(PacerWaitError);
    await expect(bucket.reserve(500)).rejects.toThrow(/asks to wait \d+ ms, longer than the 500 ms allowed/);
    // Nothing was taken by the refusals: the wait is still one token's (<= 1 s), not three.
    const wait = await bucket.reserve(5000);
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(1000);
    await bucket.block(3_600_000);
    await expect(bucket.acquire({ maxWaitMs: 2000 })).rejects.toThrow(/asks to wait 3\d{6} ms/);
  });

  it('refuses to share a bucket with a source of another rate, naming both, and keeps the first rate', async () => {
    const name = uniqueName('bucket');
    const first = new PgTokenBucket(pool, { name, ratePerSecond: 10, burst: 10 });
    expect(await first.reserve()).toBe(0);
    const other = new PgTokenBucket(pool, { name, ratePerSecond: 5, burst: 2 });
    await expect(other.reserve()).rejects.toThrow(RateBucketConflictError);
    await expect(other.observe(200, {})).rejects.toThrow(
      `rate bucket ${name} is 10/s with burst 10, but this source asks for 5/s with burst 2`,
    );
    const { rows } = await pool.query('SELECT rate_per_s, capacity FROM rate_buckets WHERE name = $1', [name]);
    expect(rows[0]).toEqual({ rate_per_s: 10, capacity: 10 });
    // The same rate shares it, and a bucket put right is used again by the refused source's instance.
    expect(await new PgTokenBucket(pool, first.spec).reserve()).toBe(0);
    await pool.query('UPDATE rate_buckets SET rate_per_s = 5, capacity = 2 WHERE name = $1', [name]);
    expect(await other.reserve()).toBeGreaterThanOrEqual(0);
  });

  it('caps its tokens at the remaining count the server reports', async () => {
    const bucket = new PgTokenBucket(pool, { name: uniqueName('bucket'), ratePerSecond: 1, burst: 10 });
    await bucket.observe(200, { 'x-ratelimit-remaining': '1' });
    expect(await bucket.reserve()).toBe(0);
    expect(await bucket.reserve()).toBeGreaterThan(900);
  });
});
