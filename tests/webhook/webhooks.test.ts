import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { counts, STANDARD_SECRET, startApp, type TestApp, testSources } from './app-helpers.ts';
import { githubSignature, hmacSignature, nowSeconds, standardSignature, stripeSignature } from './signing.ts';

const sources = testSources();
let t: TestApp;

beforeAll(async () => {
  t = await startApp(Object.values(sources));
});
afterAll(async () => {
  await t.close();
});

function post(source: string, body: string | Buffer, headers: Record<string, string>) {
  return t.app.inject({
    method: 'POST',
    url: `/webhooks/${source}`,
    headers: { 'content-type': 'application/json', ...headers },
    payload: body,
  });
}

function githubDelivery(secret: string, body: string | Buffer, delivery: string = randomUUID()) {
  return {
    'x-hub-signature-256': githubSignature(secret, body),
    'x-github-delivery': delivery,
    'x-github-event': 'push',
  };
}

describe('POST /webhooks/:source — github', () => {
  const name = sources.github.name;
  const body = JSON.stringify({ ref: 'refs/heads/main', repository: { full_name: 'octo/repo' } });

  it('stores a valid delivery with its outbox row, and answers a replay DUPLICATE without writing', async () => {
    const headers = githubDelivery('gh-new', body);
    const first = await post(name, body, headers);
    expect(first.statusCode).toBe(200);
    expect(first.json()).toMatchObject({ event_id: headers['x-github-delivery'], status: 'ACCEPTED', source: name });
    const replay = await post(name, body, headers);
    expect(replay.statusCode).toBe(200);
    expect(replay.json()).toMatchObject({ event_id: headers['x-github-delivery'], status: 'DUPLICATE' });
    const { rows } = await t.pool.query('SELECT event_type, entity_key, lineage FROM raw_events WHERE source = $1', [
      name,
    ]);
    expect(rows).toEqual([
      {
        event_type: 'push',
        entity_key: 'octo/repo',
        lineage: expect.objectContaining({ via: 'webhook', delivery_id: headers['x-github-delivery'] }),
      },
    ]);
    expect(await counts(t.pool, name)).toEqual({ events: 1, outbox: 1 });
  });

  it('accepts the rotated (previous) secret, refuses tampered bodies and unknown secrets with 401', async () => {
    const rotated = await post(name, body, githubDelivery('gh-old', body));
    expect(rotated.json().status).toBe('ACCEPTED');
    const tampered = await post(name, body.replace('main', 'evil'), githubDelivery('gh-new', body));
    expect(tampered.statusCode).toBe(401);
    expect(tampered.json()).toMatchObject({ error: 'signature_invalid', check: 'no_matching_signature' });
    expect(tampered.body).not.toContain('gh-new');
    const retired = await post(name, body, githubDelivery('gh-retired', body));
    expect(retired.json().check).toBe('no_matching_signature');
    const missing = await post(name, body, { 'x-github-delivery': randomUUID(), 'x-github-event': 'push' });
    expect(missing.json()).toMatchObject({ check: 'missing_header' });
    expect(await counts(t.pool, name)).toEqual({ events: 2, outbox: 2 });
  });

  it("verifies GitHub's documented example over the raw bytes (then refuses its non-JSON body)", async () => {
    const github = {
      ...sources.github,
      name: `ghdoc-${randomUUID().slice(0, 6)}`,
      secrets: ["It's a Secret to Everybody"],
    };
    const doc = await startApp([github]);
    try {
      const answer = await doc.app.inject({
        method: 'POST',
        url: `/webhooks/${github.name}`,
        headers: {
          'content-type': 'application/json',
          'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
          'x-github-delivery': 'doc-1',
          'x-github-event': 'ping',
        },
        payload: 'Hello, World!',
      });
      // 400 (not 401): the signature passed; "Hello, World!" is simply not a JSON event.
      expect(answer.statusCode).toBe(400);
      expect(answer.json().error).toBe('malformed_json');
      expect(await counts(doc.pool, github.name)).toEqual({ events: 0, outbox: 0 });
    } finally {
      await doc.close();
    }
  });
});

describe('POST /webhooks/:source — stripe', () => {
  const name = sources.stripe.name;
  const event = (id: string) =>
    JSON.stringify({ id, type: 'invoice.paid', created: nowSeconds() - 5, data: { object: { id: 'in_1' } } });

  it('valid, replayed, stale and tampered deliveries', async () => {
    const body = event('evt_1');
    const valid = await post(name, body, { 'stripe-signature': stripeSignature('whsec_stripe', body, nowSeconds()) });
    expect(valid.json()).toMatchObject({ event_id: 'evt_1', status: 'ACCEPTED' });
    expect(valid.json().ingest_lag_ms).toBeGreaterThanOrEqual(5000);
    const replay = await post(name, body, { 'stripe-signature': stripeSignature('whsec_stripe', body, nowSeconds()) });
    expect(replay.json().status).toBe('DUPLICATE');
    const stale = await post(name, event('evt_2'), {
      'stripe-signature': stripeSignature('whsec_stripe', event('evt_2'), nowSeconds() - 301),
    });
    expect(stale.statusCode).toBe(401);
    expect(stale.json().check).toBe('stale_timestamp');
    const tampered = await post(name, event('evt_3'), {
      'stripe-signature': stripeSignature('whsec_stripe', event('evt_4'), nowSeconds()),
    });
    expect(tampered.json().check).toBe('no_matching_signature');
    const { rows } = await t.pool.query('SELECT entity_key, event_type FROM raw_events WHERE source = $1', [name]);
    expect(rows).toEqual([{ entity_key: 'in_1', event_type: 'invoice.paid' }]);
    expect(await counts(t.pool, name)).toEqual({ events: 1, outbox: 1 });
  });
});

describe('POST /webhooks/:source — standard-webhooks', () => {
  const name = sources.standard.name;
  const body = JSON.stringify({ type: 'user.created', data: { id: 'user_9' } });
  const headers = (id: string, ts: number, secret = STANDARD_SECRET) => ({
    'webhook-id': id,
    'webhook-timestamp': String(ts),
    'webhook-signature': standardSignature(secret, id, ts, body),
  });

  it('valid, replayed, stale, tampered and foreign-secret deliveries', async () => {
    const valid = await post(name, body, headers('msg_1', nowSeconds()));
    expect(valid.json()).toMatchObject({ event_id: 'msg_1', status: 'ACCEPTED' });
    expect((await post(name, body, headers('msg_1', nowSeconds()))).json().status).toBe('DUPLICATE');
    const stale = await post(name, body, headers('msg_2', nowSeconds() - 301));
    expect(stale.json()).toMatchObject({ error: 'signature_invalid', check: 'stale_timestamp' });
    const tampered = await post(name, body.replace('user_9', 'user_8'), headers('msg_3', nowSeconds()));
    expect(tampered.json().check).toBe('no_matching_signature');
    const other = `whsec_${Buffer.from('another key, not the configured one').toString('base64')}`;
    expect((await post(name, body, headers('msg_4', nowSeconds(), other))).statusCode).toBe(401);
    const { rows } = await t.pool.query('SELECT entity_key, event_type FROM raw_events WHERE source = $1', [name]);
    expect(rows).toEqual([{ entity_key: 'user_9', event_type: 'user.created' }]);
  });
});

describe('POST /webhooks/:source — hmac', () => {
  it('hex with a prefix, id and type from headers, entity key from a body path', async () => {
    const name = sources.hmac.name;
    const body = JSON.stringify({ account: { id: 'acct_7' }, amount: 3 });
    const headers = {
      'x-acme-signature': `sha256=${hmacSignature('hmac-key', body, 'hex')}`,
      'x-acme-delivery': 'd-1',
      'x-acme-event': 'charge',
    };
    expect((await post(name, body, headers)).json()).toMatchObject({ event_id: 'd-1', status: 'ACCEPTED' });
    expect((await post(name, body, headers)).json().status).toBe('DUPLICATE');
    const wrong = await post(name, body, { ...headers, 'x-acme-signature': hmacSignature('hmac-key', body, 'hex') });
    expect(wrong.json().check).toBe('bad_format');
    const { rows } = await t.pool.query('SELECT entity_key, event_type FROM raw_events WHERE source = $1', [name]);
    expect(rows).toEqual([{ entity_key: 'acct_7', event_type: 'charge' }]);
  });

  it('base64 without an id header: the body hash is the id, so a resend is a DUPLICATE', async () => {
    const name = sources.hmacNoId.name;
    const body = JSON.stringify({ type: 'ping', n: 1 });
    const headers = { 'x-sig': hmacSignature('hmac-key', body, 'base64') };
    const first = (await post(name, body, headers)).json();
    expect(first.status).toBe('ACCEPTED');
    expect(first.event_id).toMatch(/^[0-9a-f]{64}$/);
    expect((await post(name, body, headers)).json()).toMatchObject({ event_id: first.event_id, status: 'DUPLICATE' });
  });
});

describe('bad deliveries get a clear 4xx and write nothing', () => {
  const name = sources.github.name;

  it('unknown source 404, non-JSON content type 415, body over the limit 413', async () => {
    const body = '{"a":1}';
    const unknown = await post('no-such-source', body, githubDelivery('gh-new', body));
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ error: 'unknown_source' });
    const text = await t.app.inject({
      method: 'POST',
      url: `/webhooks/${name}`,
      headers: { 'content-type': 'text/plain', ...githubDelivery('gh-new', body) },
      payload: body,
    });
    expect(text.statusCode).toBe(415);
    const huge = JSON.stringify({ blob: 'x'.repeat(70 * 1024) });
    const tooLarge = await post(name, huge, githubDelivery('gh-new', huge));
    expect(tooLarge.statusCode).toBe(413);
    expect(tooLarge.json().message).toContain('65536');
  });

  it('malformed JSON, invalid UTF-8, deep nesting, a non-object body: 400 after a valid signature', async () => {
    const before = await counts(t.pool, name);
    const cases: Array<[string | Buffer, string]> = [
      ['{"a":', 'malformed_json'],
      [Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]), 'invalid_utf8'],
      [`${'['.repeat(40)}${']'.repeat(40)}`, 'too_deep'],
      ['[1,2]', 'not_an_object'],
    ];
    for (const [body, code] of cases) {
      const answer = await post(name, body, githubDelivery('gh-new', body));
      expect(answer.statusCode, code).toBe(400);
      expect(answer.json().error).toBe(code);
    }
    const noEvent = await post(name, '{"a":1}', { 'x-hub-signature-256': githubSignature('gh-new', '{"a":1}') });
    expect(noEvent.json()).toMatchObject({ error: 'missing_header', message: 'missing x-github-delivery header' });
    expect(await counts(t.pool, name)).toEqual(before);
  });
});

describe('concurrency', () => {
  it('the same delivery sent 50 times at once yields one event and one outbox row', async () => {
    const name = sources.github.name;
    await t.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (t.app.server.address() as { port: number }).port;
    const body = JSON.stringify({ action: 'opened', repository: { full_name: 'octo/concurrent' } });
    const headers = { 'content-type': 'application/json', ...githubDelivery('gh-new', body, 'storm-1') };
    const before = await counts(t.pool, name);
    const answers = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const res = await request(`http://127.0.0.1:${port}/webhooks/${name}`, { method: 'POST', headers, body });
        return { code: res.statusCode, json: (await res.body.json()) as { status: string } };
      }),
    );
    expect(answers.every((a) => a.code === 200)).toBe(true);
    expect(answers.filter((a) => a.json.status === 'ACCEPTED')).toHaveLength(1);
    expect(answers.filter((a) => a.json.status === 'DUPLICATE')).toHaveLength(49);
    const after = await counts(t.pool, name);
    expect({ events: after.events - before.events, outbox: after.outbox - before.outbox }).toEqual({
      events: 1,
      outbox: 1,
    });
  });
});
