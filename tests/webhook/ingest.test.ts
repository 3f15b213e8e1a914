import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DRY_RUN_HEADER } from '../../services/webhook/app.ts';
import { counts, startApp, type TestApp } from './app-helpers.ts';

let t: TestApp;
beforeAll(async () => {
  t = await startApp([]);
});
afterAll(async () => {
  await t.close();
});

const uniqueSource = () => `ing-${randomUUID().slice(0, 8)}`;

function ingest(body: unknown, headers: Record<string, string> = {}, url = '/ingest') {
  return t.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const seedEvent = (source: string) => ({
  source,
  event_type: 'heartbeat',
  entity_id: 'user_123',
  event_time: '2025-12-28T23:59:59Z',
  payload: { steps: 10 },
});

describe('POST /ingest (seed 004)', () => {
  it('answers ACCEPTED then DUPLICATE with the same server-side event id and a lag', async () => {
    const source = uniqueSource();
    const first = await ingest(seedEvent(source));
    expect(first.statusCode).toBe(200);
    const canonical = `{"entity_id":"user_123","event_time":"2025-12-28T23:59:59.000Z","event_type":"heartbeat","payload":{"steps":10},"source":"${source}"}`;
    const expectedId = createHash('sha256').update(canonical).digest('hex');
    expect(first.json()).toMatchObject({
      event_id: expectedId,
      status: 'ACCEPTED',
      source,
      storage_ref: `raw_events/${source}/${expectedId}`,
    });
    expect(first.json().ingest_lag_ms).toBeGreaterThan(Date.now() - Date.parse('2025-12-29T00:00:00Z'));
    // Same instant written differently, keys in another order: the same event.
    const again = await ingest({
      payload: { steps: 10 },
      event_time: '2025-12-29T00:59:59.000+01:00',
      entity_id: 'user_123',
      event_type: 'heartbeat',
      source,
    });
    expect(again.json()).toMatchObject({ event_id: expectedId, status: 'DUPLICATE' });
    const { rows } = await t.pool.query(
      'SELECT event_type, entity_key, event_time, payload, lineage FROM raw_events WHERE source = $1',
      [source],
    );
    expect(rows).toEqual([
      {
        event_type: 'heartbeat',
        entity_key: 'user_123',
        event_time: new Date('2025-12-28T23:59:59Z'),
        payload: { steps: 10 },
        lineage: expect.objectContaining({ via: 'ingest' }),
      },
    ]);
    expect(await counts(t.pool, source)).toEqual({ events: 1, outbox: 1 });
  });

  it('refuses bad bodies with 400 naming every failing field, and writes nothing', async () => {
    const source = uniqueSource();
    const cases: Array<[unknown, string[]]> = [
      [{ source, event_type: 'x' }, ['/entity_id', '/event_time', '/payload']],
      [{ ...seedEvent(source), event_id: 'mine' }, ['/event_id']],
      [{ ...seedEvent(source), payload: [1] }, ['/payload']],
      [{ ...seedEvent(source), entity_id: '' }, ['/entity_id']],
      [{ ...seedEvent(source), event_time: '2025-02-30T00:00:00Z' }, ['/event_time']],
      [{ ...seedEvent(source), event_time: '1969-12-31T23:59:59Z' }, ['/event_time']],
      [{ ...seedEvent(source), event_time: '2999-01-01T00:00:00Z' }, ['/event_time']],
      [{ ...seedEvent(source), event_time: 'yesterday' }, ['/event_time']],
      [{ ...seedEvent(source), source: 'has space' }, ['/source']],
      [{ ...seedEvent(source), payload: { note: 'nul \u0000 inside' } }, ['/payload']],
    ];
    for (const [body, paths] of cases) {
      const answer = await ingest(body);
      expect(answer.statusCode, JSON.stringify(body)).toBe(400);
      const problems = answer.json().problems as Array<{ path: string }>;
      expect(problems.map((p) => p.path).sort(), JSON.stringify(body)).toEqual(paths);
    }
    // Valid JSON, not valid Unicode (an unpaired surrogate): Postgres would refuse it, so the answer
    // names where it is.
    const raw = (entity: string, note: string) =>
      `{"source":"${source}","event_type":"t","entity_id":"${entity}","event_time":"2025-01-01T00:00:00Z","payload":{"s":"${note}"}}`;
    for (const [body, path] of [
      [raw('e', '\\ud800'), '/payload'],
      [raw('e\\udc00', 'fine'), '/entity_id'],
    ]) {
      const answer = await ingest(body);
      expect(answer.statusCode, body).toBe(400);
      expect(answer.json().problems.map((p: { path: string }) => p.path)).toEqual([path]);
      expect(answer.json().message).toContain('unpaired UTF-16 surrogate');
    }
    expect(await counts(t.pool, source)).toEqual({ events: 0, outbox: 0 });
  });

  it('checks payloads against schemas/json/<source>/<event_type>.schema.json when one exists', async () => {
    const answer = await ingest({ ...seedEvent('demo'), payload: { steps: 'ten' } });
    expect(answer.statusCode).toBe(400);
    expect(answer.json()).toMatchObject({ error: 'contract_violation', problems: [{ path: '/payload/steps' }] });
    const missing = await ingest({ ...seedEvent('demo'), payload: {} });
    expect(missing.json().problems).toEqual([{ path: '/payload/steps', message: expect.any(String) }]);
  });

  it('malformed JSON, invalid UTF-8, deep nesting, 415 and 413', async () => {
    expect((await ingest('{"source":')).json().error).toBe('malformed_json');
    const bytes = Buffer.concat([Buffer.from('{"source":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
    const utf8 = await t.app.inject({
      method: 'POST',
      url: '/ingest',
      headers: { 'content-type': 'application/json' },
      payload: bytes,
    });
    expect(utf8.json().error).toBe('invalid_utf8');
    const deep = { ...seedEvent(uniqueSource()), payload: JSON.parse(`${'{"a":'.repeat(40)}1${'}'.repeat(40)}`) };
    expect((await ingest(deep)).json().error).toBe('too_deep');
    expect((await ingest('source=x', { 'content-type': 'application/x-www-form-urlencoded' })).statusCode).toBe(415);
    const huge = { ...seedEvent(uniqueSource()), payload: { blob: 'x'.repeat(70 * 1024) } };
    expect((await ingest(huge)).statusCode).toBe(413);
  });

  it('dry run (header) validates and computes the id, writes nothing, still counts', async () => {
    const source = uniqueSource();
    const dry = await ingest(seedEvent(source), { [DRY_RUN_HEADER]: 'true' });
    expect(dry.json()).toMatchObject({ status: 'ACCEPTED', dry_run: true });
    expect(await counts(t.pool, source)).toEqual({ events: 0, outbox: 0 });
    const real = await ingest(seedEvent(source));
    expect(real.json().event_id).toBe(dry.json().event_id);
    expect((await ingest(seedEvent(source), { [DRY_RUN_HEADER]: 'true' })).json().status).toBe('DUPLICATE');
    const invalid = await ingest({ ...seedEvent(source), event_time: 'no' }, { [DRY_RUN_HEADER]: 'true' });
    expect(invalid.statusCode).toBe(400);
    const metrics = (await t.app.inject({ url: '/metrics' })).body;
    expect(metrics).toContain(`conveyor_webhook_events_total{source="${source}",status="ACCEPTED",dry_run="true"`);
    expect(metrics).toContain(`conveyor_webhook_duplicates_total{source="${source}"`);
    expect(metrics).toContain('conveyor_ingest_lag_ms_bucket');
    expect(metrics).toContain(`conveyor_webhook_requests_total{route="/ingest",source="${source}",status="400"`);
  });

  it('DRY_RUN for the whole service writes nothing', async () => {
    const dry = await startApp([], { dryRun: true });
    try {
      const source = uniqueSource();
      expect(
        (await dry.app.inject({ method: 'POST', url: '/ingest', payload: seedEvent(source) })).json(),
      ).toMatchObject({ status: 'ACCEPTED', dry_run: true });
      expect(await counts(dry.pool, source)).toEqual({ events: 0, outbox: 0 });
    } finally {
      await dry.close();
    }
  });
});

describe('POST /ingest/batch', () => {
  it('answers per item, all in one transaction', async () => {
    const source = uniqueSource();
    await ingest(seedEvent(source));
    const other = { ...seedEvent(source), entity_id: 'user_456' };
    const answer = await ingest({ events: [seedEvent(source), other, other] }, {}, '/ingest/batch');
    expect(answer.statusCode).toBe(200);
    expect(answer.json()).toMatchObject({ accepted: 1, duplicates: 2 });
    expect(answer.json().results.map((r: { status: string }) => r.status)).toEqual([
      'DUPLICATE',
      'ACCEPTED',
      'DUPLICATE',
    ]);
    expect(await counts(t.pool, source)).toEqual({ events: 2, outbox: 2 });
  });

  it('one bad item refuses the whole request, naming its index and field', async () => {
    const source = uniqueSource();
    const events = [
      { ...seedEvent(source), entity_id: 'a' },
      { ...seedEvent(source), entity_id: 'b', event_time: '2025-13-01T00:00:00Z' },
      { ...seedEvent(source), entity_id: 'c', payload: { n: 'nul \u0000' } },
    ];
    const answer = await ingest({ events }, {}, '/ingest/batch');
    expect(answer.statusCode).toBe(400);
    expect(answer.json().problems.map((p: { path: string }) => p.path)).toEqual(['/events/1/event_time']);
    const nul = await ingest({ events: [events[0], events[2]] }, {}, '/ingest/batch');
    expect(nul.statusCode).toBe(400);
    expect(nul.json().problems.map((p: { path: string }) => p.path)).toEqual(['/events/1/payload']);
    const tooMany = await ingest({ events: Array.from({ length: 101 }, () => events[0]) }, {}, '/ingest/batch');
    expect(tooMany.statusCode).toBe(400);
    expect(tooMany.json().problems[0].path).toBe('/events');
    expect(await counts(t.pool, source)).toEqual({ events: 0, outbox: 0 });
  });
});

describe('operations', () => {
  it('/healthz and /readyz answer; /readyz says not ready when Postgres does not', async () => {
    expect((await t.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    expect((await t.app.inject({ url: '/readyz' })).json()).toEqual({ status: 'ready' });
    const down = await startApp([], {});
    await down.pool.end();
    try {
      expect((await down.app.inject({ url: '/readyz' })).statusCode).toBe(503);
    } finally {
      await down.app.close();
    }
  });

  it('sheds load with 503 and Retry-After when the pool is exhausted, and writes nothing', async () => {
    const small = await startApp([], { poolMax: 1, maxWaiting: 0 });
    const source = uniqueSource();
    const held = await small.pool.connect();
    try {
      const answer = await small.app.inject({ method: 'POST', url: '/ingest', payload: seedEvent(source) });
      expect(answer.statusCode).toBe(503);
      expect(answer.headers['retry-after']).toBe('1');
      expect(answer.json().message).toContain('pool exhausted');
    } finally {
      held.release();
    }
    try {
      expect(await counts(small.pool, source)).toEqual({ events: 0, outbox: 0 });
      const later = await small.app.inject({ method: 'POST', url: '/ingest', payload: seedEvent(source) });
      expect(later.json().status).toBe('ACCEPTED');
      expect((await small.app.inject({ url: '/metrics' })).body).toMatch(/conveyor_webhook_shed_total\S* 1/);
    } finally {
      await small.close();
    }
  });
});

describe('in-memory dedupe fast path', () => {
  it('remembers only committed events: a retry after a 503 (nothing stored) is ACCEPTED and stored', async () => {
    const small = await startApp([], { poolMax: 1, maxWaiting: 0, dedupeCacheSize: 100 });
    const source = uniqueSource();
    const send = () => small.app.inject({ method: 'POST', url: '/ingest', payload: seedEvent(source) });
    try {
      const held = await small.pool.connect();
      const shed = await send().finally(() => held.release());
      expect(shed.statusCode).toBe(503);
      const retry = await send();
      expect(retry.json().status).toBe('ACCEPTED');
      expect(await counts(small.pool, source)).toEqual({ events: 1, outbox: 1 });
    } finally {
      await small.close();
    }
  });

  it('answers a replay of a stored event without Postgres, and forgets the oldest beyond its size', async () => {
    const cached = await startApp([], { dedupeCacheSize: 1 });
    const source = uniqueSource();
    const a = seedEvent(source);
    const b = { ...seedEvent(source), entity_id: 'user_b' };
    const send = (body: unknown) => cached.app.inject({ method: 'POST', url: '/ingest', payload: body as object });
    expect((await send(a)).json().status).toBe('ACCEPTED');
    expect((await send(b)).json().status).toBe('ACCEPTED');
    await cached.pool.end(); // from here on, only the cache can answer
    try {
      expect((await send(b)).json()).toMatchObject({ status: 'DUPLICATE', event_id: expect.any(String) });
      const evicted = await send(a);
      expect(evicted.statusCode).toBe(503);
      expect((await send({ ...seedEvent(source), entity_id: 'new' })).statusCode).toBe(503);
    } finally {
      await cached.app.close();
    }
  });
});
