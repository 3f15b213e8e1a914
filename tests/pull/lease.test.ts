import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../libs/db/index.ts';
import { LeaseLostError, loadCheckpoint, runSource } from '../../services/puller/engine.ts';
import { acquireLease, leaseHolder, releaseLease, withLease } from '../../services/puller/lease.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';
import { definition, eventIds, takeLease } from './helpers.ts';
import { json, type Stub, startStub } from './stub.ts';

let pool: Pool;
let stub: Stub;

beforeAll(async () => {
  pool = testPool();
  stub = await startStub();
});
afterAll(async () => {
  await stub.close();
  await pool.end();
});

describe('lease', () => {
  it('a holder whose lease expired, was taken over and released does not get it back by renewing: its run is told', async () => {
    const source = uniqueName('lease').toLowerCase();
    expect(await acquireLease(pool, source, 'stalled-a', 300)).toBe(true);
    const outcome = await withLease(pool, source, 'stalled-a', 300, async (lost?: AbortSignal) => {
      // A stalls past its lease; B takes the source over, runs, and releases it.
      await pool.query(
        `UPDATE pull_leases SET expires_at = clock_timestamp() - interval '1 second' WHERE source = $1`,
        [source],
      );
      expect(await acquireLease(pool, source, 'runner-b', 60_000)).toBe(true);
      await releaseLease(pool, source, 'runner-b');
      // A renewal tick (every 100 ms here) comes by.
      await delay(400);
      return { aborted: lost?.aborted ?? false, holder: (await leaseHolder(pool, source))?.owner };
    });
    expect(outcome).toEqual({ aborted: true, holder: undefined });
  });

  it('a page is not committed once the lease was taken over between pages (LeaseLostError)', async () => {
    let source = '';
    stub.handle = async (request, response) => {
      const page = Number(new URL(request.url, stub.url).searchParams.get('page') ?? 1);
      // While page 2 is asked for, another process takes the source over (this one stalled past its lease).
      if (page === 2) await pool.query(`UPDATE pull_leases SET owner = 'new-holder' WHERE source = $1`, [source]);
      const next = page < 3 ? { link: `</list?page=${page + 1}>; rel="next"` } : undefined;
      json(response, { data: [{ id: page * 10 + 1 }, { id: page * 10 + 2 }] }, next);
    };
    const raw = {
      name: uniqueName('fenced').toLowerCase(),
      request: { base_url: stub.url, path: '/list' },
      records: { path: 'data', primary_key: 'id', event_type: 'thing' },
      pagination: { type: 'link' },
      retry: { max_attempts: 1, deadline: '5s' },
    };
    const def = definition(raw);
    const owner = await takeLease(pool, def.name, 'first-holder');
    source = def.name;
    const run = runSource(def, { pool, owner });
    await expect(run).rejects.toThrow(LeaseLostError);
    expect(await eventIds(pool, def.name)).toEqual(['11', '12']);
    expect(await loadCheckpoint(pool, def.name)).toEqual({});
  });

  it('a run told its lease was lost sends no further request', async () => {
    stub.requests.length = 0;
    stub.handle = (_request, response) => json(response, { data: [{ id: 1 }] }, { link: '</list?page=2>; rel="next"' });
    const def = definition({
      name: uniqueName('told').toLowerCase(),
      request: { base_url: stub.url, path: '/list' },
      records: { path: 'data', primary_key: 'id', event_type: 'thing' },
      pagination: { type: 'link' },
      retry: { max_attempts: 1, deadline: '5s' },
    });
    const lost = new AbortController();
    const run = runSource(def, {
      pool,
      owner: await takeLease(pool, def.name),
      leaseLost: lost.signal,
      onPage: () => lost.abort(),
    });
    await expect(run).rejects.toThrow(LeaseLostError);
    expect(stub.requests.map((r) => r.url)).toEqual(['/list']);
  });
});
