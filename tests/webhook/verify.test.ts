import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type BadRequestError,
  canonicalJson,
  ingestEventId,
  parseEventTime,
  parseJsonObject,
} from '../../services/webhook/body.ts';
import { VerificationError, type VerifyInput, verifySignature } from '../../services/webhook/verify.ts';
import { githubSignature, hmacSignature, nowSeconds, standardSignature, stripeSignature } from './signing.ts';

async function failedCheck(input: VerifyInput): Promise<string> {
  const error = await verifySignature(input).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(VerificationError);
  return (error as VerificationError).check;
}

describe('signature schemes (pure logic)', () => {
  it("verifies GitHub's documented example", async () => {
    await verifySignature({
      scheme: 'github',
      body: Buffer.from('Hello, World!'),
      headers: {
        'x-hub-signature-256': 'sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17',
      },
      secrets: ["It's a Secret to Everybody"],
    });
  });

  it('names the failed GitHub check and never echoes a secret', async () => {
    const body = Buffer.from('{"a":1}');
    const base = { scheme: 'github' as const, body, secrets: ['s3cret-value'] };
    expect(await failedCheck({ ...base, headers: {} })).toBe('missing_header');
    expect(await failedCheck({ ...base, headers: { 'x-hub-signature-256': 'sha1=abc' } })).toBe('bad_format');
    const tampered = { 'x-hub-signature-256': githubSignature('s3cret-value', '{"a":2}') };
    expect(await failedCheck({ ...base, headers: tampered })).toBe('no_matching_signature');
    const error = await verifySignature({ ...base, headers: tampered }).catch((e: Error) => e);
    expect(String((error as Error).message)).not.toContain('s3cret-value');
  });

  it('accepts any active secret (rotation) and refuses a retired one', async () => {
    const body = Buffer.from('{"a":1}');
    const headers = { 'x-hub-signature-256': githubSignature('old', body) };
    await verifySignature({ scheme: 'github', body, headers, secrets: ['new', 'old'] });
    expect(await failedCheck({ scheme: 'github', body, headers, secrets: ['new'] })).toBe('no_matching_signature');
  });

  it('Stripe: several v1 signatures, 300 s tolerance both ways', async () => {
    const body = '{"id":"evt_1"}';
    const t = nowSeconds();
    const good = stripeSignature('whsec_a', body, t);
    const other = stripeSignature('whsec_other', body, t).split(',')[1];
    await verifySignature({
      scheme: 'stripe',
      body: Buffer.from(body),
      headers: { 'stripe-signature': `${good.split(',')[0]},${other},${good.split(',')[1]}` },
      secrets: ['whsec_a'],
    });
    const at = (seconds: number) => ({
      scheme: 'stripe' as const,
      body: Buffer.from(body),
      headers: { 'stripe-signature': stripeSignature('whsec_a', body, seconds) },
      secrets: ['whsec_a'],
    });
    await verifySignature(at(t - 299));
    expect(await failedCheck(at(t - 301))).toBe('stale_timestamp');
    expect(await failedCheck(at(t + 301))).toBe('stale_timestamp');
    const noTimestamp = { ...at(t), headers: { 'stripe-signature': good.split(',')[1]! } };
    expect(await failedCheck(noTimestamp)).toBe('bad_format');
  });

  it('Standard Webhooks: whsec_ secrets, space-separated signatures, stale timestamps', async () => {
    const secret = `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}`;
    const body = '{"type":"user.created"}';
    const t = nowSeconds();
    const headers = (ts: number, sig = standardSignature(secret, 'msg_1', ts, body)) => ({
      'webhook-id': 'msg_1',
      'webhook-timestamp': String(ts),
      'webhook-signature': `v1,AAAA ${sig}`,
    });
    const input = (h: Record<string, string>) => ({
      scheme: 'standard-webhooks' as const,
      body: Buffer.from(body),
      headers: h,
      secrets: [secret],
    });
    await verifySignature(input(headers(t)));
    expect(await failedCheck(input(headers(t - 400)))).toBe('stale_timestamp');
    expect(await failedCheck(input({ ...headers(t), 'webhook-id': 'msg_2' }))).toBe('no_matching_signature');
    expect(await failedCheck(input({ 'webhook-id': 'msg_1', 'webhook-timestamp': String(t) }))).toBe('missing_header');
    expect(await failedCheck(input({ ...headers(t), 'webhook-signature': 'v2,abc' }))).toBe('bad_format');
  });

  it('plain HMAC: hex with a prefix, or base64', async () => {
    const body = '{"k":1}';
    const hmac = { header: 'x-sig', encoding: 'hex' as const, prefix: 'sha256=' };
    const hex = `sha256=${hmacSignature('k3y', body, 'hex')}`;
    await verifySignature({
      scheme: 'hmac',
      body: Buffer.from(body),
      headers: { 'x-sig': hex },
      secrets: ['k3y'],
      hmac,
    });
    const b64 = { ...hmac, encoding: 'base64' as const, prefix: '' };
    await verifySignature({
      scheme: 'hmac',
      body: Buffer.from(body),
      headers: { 'x-sig': hmacSignature('k3y', body, 'base64') },
      secrets: ['k3y'],
      hmac: b64,
    });
    const plain = { scheme: 'hmac' as const, body: Buffer.from(body), secrets: ['k3y'], hmac };
    expect(await failedCheck({ ...plain, headers: { 'x-sig': hex.slice(7) } })).toBe('bad_format');
    expect(await failedCheck({ ...plain, headers: { 'x-sig': `sha256=${'0'.repeat(64)}` } })).toBe(
      'no_matching_signature',
    );
  });
});

describe('event id and event time (pure logic)', () => {
  it('hashes the canonical JSON of the five fields, whatever the key order', () => {
    const fields = {
      source: 'demo',
      event_type: 'heartbeat',
      entity_id: 'user_123',
      event_time: '2025-12-28T23:59:59.000Z',
      payload: { steps: 10, b: [1, { z: 1, a: 'x' }] },
    };
    const expected =
      '{"entity_id":"user_123","event_time":"2025-12-28T23:59:59.000Z","event_type":"heartbeat",' +
      '"payload":{"b":[1,{"a":"x","z":1}],"steps":10},"source":"demo"}';
    expect(canonicalJson(fields)).toBe(expected);
    expect(ingestEventId(fields)).toBe(createHash('sha256').update(expected).digest('hex'));
    const reordered = { ...fields, payload: { b: [1, { a: 'x', z: 1 }], steps: 10 } };
    expect(ingestEventId(reordered)).toBe(ingestEventId(fields));
  });

  it('parses ISO-8601 with a zone and refuses out-of-range or impossible times', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseEventTime('2025-12-28T23:59:59+01:00', '/t', now, 0).toISOString()).toBe('2025-12-28T22:59:59.000Z');
    for (const bad of ['2025-12-28', '2025-12-28T23:59:59', '2025-02-30T00:00:00Z', '1969-12-31T23:59:59Z']) {
      expect(() => parseEventTime(bad, '/t', now, 0), bad).toThrow();
    }
    expect(() => parseEventTime('2026-01-01T00:00:02Z', '/t', now, 1000)).toThrow(/in the future/);
  });

  it('knows leap years: 29 February only in years divisible by 4, except centuries not divisible by 400', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    for (const ok of ['2024-02-29T00:00:00Z', '2000-02-29T00:00:00Z', '2025-12-31T23:59:59Z']) {
      expect(parseEventTime(ok, '/t', now, 0).toISOString().slice(0, 10), ok).toBe(ok.slice(0, 10));
    }
    for (const bad of [
      '2025-02-29T00:00:00Z',
      '2100-02-29T00:00:00Z',
      '2025-04-31T00:00:00Z',
      '2025-13-01T00:00:00Z',
    ]) {
      expect(() => parseEventTime(bad, '/t', now + 1e13, 0), bad).toThrow(/calendar/);
    }
  });

  it('measures nesting outside strings only, whatever the escapes', () => {
    const depthOk = (text: string, max: number) => {
      try {
        parseJsonObject(text, max);
        return true;
      } catch (error) {
        if ((error as BadRequestError).code === 'too_deep') return false;
        throw error;
      }
    };
    expect(depthOk('{"a":"[[[[{{{{"}', 1)).toBe(true);
    expect(depthOk('{"a":"\\\\\\"[[","b":[1]}', 2)).toBe(true);
    expect(depthOk('{"a":"\\\\\\"[[","b":[1]}', 1)).toBe(false);
    expect(depthOk('{"a":"x\\"[[","b":1}', 1)).toBe(true);
    expect(depthOk('{"a":"\\\\","b":[[1]]}', 3)).toBe(true);
    expect(depthOk('{"a":"\\\\","b":[[1]]}', 2)).toBe(false);
  });
});

describe('secret rotation, every scheme (pure logic)', () => {
  const body = '{"id":"evt_r","type":"t"}';
  const t = nowSeconds();
  const oldStd = `whsec_${Buffer.from('the previous standard webhooks key').toString('base64')}`;
  const newStd = `whsec_${Buffer.from('the current standard webhooks key!').toString('base64')}`;
  const cases: Array<[string, VerifyInput]> = [
    [
      'stripe',
      {
        scheme: 'stripe',
        body: Buffer.from(body),
        headers: { 'stripe-signature': stripeSignature('old', body, t) },
        secrets: ['new', 'old'],
      },
    ],
    [
      'standard-webhooks',
      {
        scheme: 'standard-webhooks',
        body: Buffer.from(body),
        headers: {
          'webhook-id': 'm',
          'webhook-timestamp': String(t),
          'webhook-signature': standardSignature(oldStd, 'm', t, body),
        },
        secrets: [newStd, oldStd],
      },
    ],
    [
      'hmac',
      {
        scheme: 'hmac',
        body: Buffer.from(body),
        headers: { 'x-sig': hmacSignature('old', body, 'hex') },
        secrets: ['new', 'old'],
        hmac: { header: 'x-sig', encoding: 'hex', prefix: '' },
      },
    ],
  ];
  for (const [name, input] of cases) {
    it(`${name}: the previous secret verifies while listed, and not once removed`, async () => {
      await verifySignature(input);
      expect(await failedCheck({ ...input, secrets: input.secrets.slice(0, 1) })).toBe('no_matching_signature');
    });
  }
});
