import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Pool } from '../../libs/db/index.ts';
import { loadCheckpoint, PageError, runSource } from '../../services/puller/engine.ts';
import { pullOnce } from '../../services/puller/runner.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';
import { definition, eventIds, takeLease } from './helpers.ts';
import { json, type Stub, startStub } from './stub.ts';

let pool: Pool;
let stub: Stub;
let other: Stub;

beforeAll(async () => {
  pool = testPool();
  stub = await startStub();
  other = await startStub();
});
afterAll(async () => {
  await stub.close();
  await other.close();
  await pool.end();
});
beforeEach(() => {
  stub.requests.length = 0;
  other.requests.length = 0;
});

/** A source on the stub: records in `data`, fixed event type, no retries (answers are scripted). */
function stubDefinition(overrides: Record<string, unknown>): Record<string, unknown> {
  return {
    name: uniqueName('stub').toLowerCase(),
    request: { base_url: stub.url, path: '/list' },
    records: { path: 'data', primary_key: 'id', event_type: 'thing' },
    pagination: { type: 'none' },
    retry: { max_attempts: 1, deadline: '5s' },
    ...overrides,
  };
}

async function run(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  const def = definition(raw, env);
  return runSource(def, { pool, owner: await takeLease(pool, def.name), env });
}

const page = (ids: number[]) => ids.map((id) => ({ id }));

describe('pagination that would never end', () => {
  it('fails when a Link rel="next" points at the page just read, naming the repeat', async () => {
    const raw = stubDefinition({ pagination: { type: 'link' } });
    stub.handle = (request, response) =>
      json(response, { data: page([1, 2]) }, { link: `<${stub.url}${request.url}>; rel="next"` });
    const failed = run(raw);
    await expect(failed).rejects.toThrow(PageError);
    await expect(failed).rejects.toThrow(/already requested in this run/);
    expect(stub.requests).toHaveLength(1);
  });

  it('fails on a cursor cycle A -> B -> A without moving the checkpoint', async () => {
    const raw = stubDefinition({
      pagination: { type: 'cursor', cursor_path: 'next', cursor_param: 'cursor' },
      incremental: { type: 'cursor' },
    });
    stub.handle = (request, response) => {
      const cursor = new URL(request.url, stub.url).searchParams.get('cursor');
      json(response, { data: page([1]), next: cursor === 'A' ? 'B' : 'A' });
    };
    await expect(run(raw)).rejects.toThrow(/cursor=A was already requested in this run/);
    expect(stub.requests.map((r) => r.url)).toEqual(['/list', '/list?cursor=A', '/list?cursor=B']);
    // The pages before the loop are committed with their own positions; the looping page is not.
    expect((await loadCheckpoint(pool, String(raw.name))).cursor).toBe('B');
  });

  it('fails on a keyset page whose highest value is not above the one asked for (a page of one tied value)', async () => {
    const raw = stubDefinition({
      pagination: { type: 'keyset', param: 'since', field: 'v', limit_param: 'n', limit: 2 },
    });
    stub.handle = (_request, response) =>
      json(response, {
        data: [
          { id: 1, v: 7 },
          { id: 2, v: 7 },
        ],
      });
    await expect(run(raw)).rejects.toThrow(/highest v 7 is not above since=7/);
    expect(stub.requests.map((r) => r.url)).toEqual(['/list?n=2', '/list?n=2&since=7']);
  });
});

describe('a Link header that names a next page', () => {
  it('fails when the next page cannot be read, rather than taking the page for the last', async () => {
    const raw = stubDefinition({ pagination: { type: 'link' } });
    stub.handle = (_request, response) => json(response, { data: page([1]) }, { link: '<http://[bad>; rel="next"' });
    await expect(run(raw)).rejects.toThrow(/names a next page that cannot be read/);
  });
});

describe('credentials stay with the source', () => {
  it('does not follow a next page on another origin, so the token is not sent there', async () => {
    const raw = stubDefinition({
      pagination: { type: 'link' },
      auth: { type: 'bearer', token_env: 'STUB_TOKEN' },
    });
    stub.handle = (_request, response) =>
      json(response, { data: page([1]) }, { link: `<${other.url}/steal?page=2>; rel="next"` });
    other.handle = (_request, response) => json(response, { data: [] });
    const failed = run(raw, { STUB_TOKEN: 'SECRET-TOKEN-1' });
    await expect(failed).rejects.toThrow(PageError);
    await expect(failed).rejects.toThrow(`is on another origin than ${stub.url}`);
    expect(stub.requests[0]!.headers.authorization).toBe('Bearer SECRET-TOKEN-1');
    expect(other.requests).toEqual([]);
    expect(await eventIds(pool, String(raw.name))).toEqual([]);
  });
});

describe('an API key sent as a query parameter of any name', () => {
  const KEY = 'KEY-s3cr3t/0042+x';
  const env = { WEATHER_KEY: KEY, WEATHER_TOKEN: 'TOKEN-from-env-77' };
  const keyedDefinition = () =>
    stubDefinition({
      request: { base_url: stub.url, path: '/list', params: { private_token: '${WEATHER_TOKEN}', units: 'metric' } },
      auth: { type: 'api_key', key_env: 'WEATHER_KEY', query_param: 'appid' },
      pagination: { type: 'link' },
    });
  const leaks = (text: string) =>
    text.includes(KEY) || text.includes(encodeURIComponent(KEY)) || text.includes('TOKEN-from-env-77');

  it('is masked in lineage, quarantine, progress, pull_runs.error and the thrown error', async () => {
    const raw = keyedDefinition();
    stub.handle = (request, response) => {
      const at = new URL(request.url, stub.url);
      if (at.searchParams.get('page') !== '2') {
        at.searchParams.set('page', '2');
        // One good record, one without its key (quarantined with the URL).
        json(response, { data: [{ id: 1 }, { name: 'no id' }] }, { link: `<${at.pathname}${at.search}>; rel="next"` });
      } else {
        // A server that echoes the request in its error answer, as many do.
        response.writeHead(400, { 'content-type': 'text/plain' }).end(`bad request ${request.url}`);
      }
    };
    const def = definition(raw, env);
    const shown: string[] = [];
    const failed = pullOnce(def, {
      pool,
      owner: 'mask-test',
      leaseTtlMs: 30_000,
      waitLeaseMs: 0,
      env,
      onPage: (progress) => shown.push(progress.url),
    });
    await expect(failed).rejects.toThrow(/answered 400/);
    const error = await failed.catch((e: Error) => e);
    // The key really was sent, and is found nowhere it was recorded or shown.
    expect(new URL(stub.requests[0]!.url, stub.url).searchParams.get('appid')).toBe(KEY);
    expect(leaks(String((error as Error).message))).toBe(false);
    expect(leaks(String((error as Error).stack))).toBe(false);
    expect(shown).toHaveLength(1);
    expect(shown[0]).toContain('appid=***');
    expect(shown[0]).toContain('private_token=***');
    expect(leaks(shown.join(' '))).toBe(false);
    const stored = await pool.query<{ text: string }>(
      `SELECT lineage::text AS text FROM raw_events WHERE source = $1
       UNION ALL SELECT url FROM pull_quarantine WHERE source = $1
       UNION ALL SELECT coalesce(error, '') FROM pull_runs WHERE source = $1`,
      [def.name],
    );
    expect(stored.rows).toHaveLength(3);
    expect(stored.rows.find((r) => r.text.includes('answered 400'))).toBeTruthy();
    for (const row of stored.rows) expect(leaks(row.text)).toBe(false);
  });

  it('is masked in a PageError', async () => {
    const raw = keyedDefinition();
    stub.handle = (_request, response) =>
      response.writeHead(200, { 'content-type': 'application/json' }).end('{"data": [');
    const failed = run(raw, env);
    await expect(failed).rejects.toThrow(PageError);
    const error = (await failed.catch((e: Error) => e)) as Error;
    expect(error.message).toContain('appid=***');
    expect(leaks(error.message)).toBe(false);
  });
});

describe('newer wins, to the microsecond', () => {
  it('keeps two versions within one millisecond apart; ids of millisecond times are as before', async () => {
    const raw = stubDefinition({
      records: { path: 'data', primary_key: 'id', updated_at: 'updated_at', event_type: 'thing' },
    });
    let served: unknown[] = [];
    stub.handle = (_request, response) => json(response, { data: served });
    const serve = async (records: Array<{ id: number; updated_at: string }>) => {
      served = records;
      return run(raw);
    };
    expect(
      await serve([
        { id: 1, updated_at: '2025-03-01T10:00:00.123456Z' },
        { id: 2, updated_at: '2025-03-01T10:00:00.123Z' },
        { id: 3, updated_at: '2025-03-01T12:00:00.5+02:00' },
      ]),
    ).toMatchObject({ accepted: 3 });
    // A newer version in the same millisecond is new; trailing zeros and the same ms are the same version.
    expect(
      await serve([
        { id: 1, updated_at: '2025-03-01T10:00:00.123789Z' },
        { id: 2, updated_at: '2025-03-01T10:00:00.123000Z' },
        { id: 3, updated_at: '2025-03-01T10:00:00.500Z' },
      ]),
    ).toMatchObject({ accepted: 1, duplicates: 2, stale: 0 });
    // An older version within the same millisecond is stale.
    expect(await serve([{ id: 1, updated_at: '2025-03-01T10:00:00.1235Z' }])).toMatchObject({ accepted: 0, stale: 1 });
    expect(await eventIds(pool, String(raw.name))).toEqual([
      '1@2025-03-01T10:00:00.123456Z',
      '1@2025-03-01T10:00:00.123789Z',
      '2@2025-03-01T10:00:00.123Z',
      '3@2025-03-01T10:00:00.500Z',
    ]);
  });
});
