import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { PgFingerprintStore } from '../../libs/http/fingerprints.ts';
import {
  CircuitOpenError,
  CircuitRegistry,
  HttpClient,
  HttpError,
  redactSecrets,
  requestFingerprint,
  serverWaitMs,
} from '../../libs/http/index.ts';
import { PgTokenBucket } from '../../libs/ratelimit/index.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({ items: 10 });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

describe('header parsing (pure)', () => {
  const now = Date.parse('2025-01-01T00:00:00Z');
  it('reads Retry-After as seconds or an HTTP-date, then the reset headers', () => {
    expect(serverWaitMs({ 'retry-after': '3' }, now)).toBe(3000);
    expect(serverWaitMs({ 'retry-after': 'Wed, 01 Jan 2025 00:00:05 GMT' }, now)).toBe(5000);
    expect(serverWaitMs({ 'x-ratelimit-reset': String(now / 1000 + 7) }, now)).toBe(7000);
    expect(serverWaitMs({ 'ratelimit-reset': '2' }, now)).toBe(2000);
    expect(serverWaitMs({}, now)).toBeUndefined();
  });
  it('reads a reset header as epoch milliseconds, epoch seconds or seconds from now, by its size', () => {
    expect(serverWaitMs({ 'x-ratelimit-reset': String(now + 7000) }, now)).toBe(7000);
    expect(serverWaitMs({ 'x-ratelimit-reset': String(now - 7000) }, now)).toBe(0);
    expect(serverWaitMs({ 'x-ratelimit-reset': String(now / 1000 + 7) }, now)).toBe(7000);
    expect(serverWaitMs({ 'x-ratelimit-reset': '60' }, now)).toBe(60_000);
    expect(serverWaitMs({ 'x-ratelimit-reset': `${now / 1000 + 7}, ${now / 1000 + 7}` }, now)).toBe(7000);
  });
  it('reads the first value of a Retry-After sent twice (joined with a comma), dates included', () => {
    expect(serverWaitMs({ 'retry-after': '120, 120' }, now)).toBe(120_000);
    expect(serverWaitMs({ 'retry-after': '5, 10' }, now)).toBe(5000);
    const date = 'Wed, 01 Jan 2025 00:00:05 GMT';
    expect(serverWaitMs({ 'retry-after': `${date}, ${date}` }, now)).toBe(5000);
    expect(serverWaitMs({ 'retry-after': 'Wed, 01 Jan 2025 00:00:09 GMT, 3' }, now)).toBe(9000);
    expect(serverWaitMs({ 'retry-after': 'soon' }, now)).toBeUndefined();
  });
  it('fingerprints method + url + body and masks secrets in URLs', () => {
    expect(requestFingerprint('post', 'http://a/x', '{}')).toBe(requestFingerprint('POST', 'http://a/x', '{}'));
    expect(requestFingerprint('POST', 'http://a/x', '{}')).not.toBe(
      requestFingerprint('POST', 'http://a/x', '{"a":1}'),
    );
    expect(redactSecrets('http://a/x?api_key=s3cret&page=2')).toBe('http://a/x?api_key=***&page=2');
  });
  it('fingerprints unambiguously: where the url ends and the body begins is part of the identity', () => {
    expect(requestFingerprint('POST', 'http://a/xx', '')).not.toBe(requestFingerprint('POST', 'http://a/x', 'x'));
    expect(requestFingerprint('POST', 'http://a/x', '1:x')).not.toBe(requestFingerprint('POST', 'http://a/x1:', 'x'));
    expect(requestFingerprint('POST', 'http://a/x', 'é')).not.toBe(requestFingerprint('POST', 'http://a/x', 'e'));
  });
});

describe('HttpClient against the simulator', () => {
  const fast = { baseDelayMs: 10, maxDelayMs: 50 };
  const json = { 'content-type': 'application/json' };

  it('retries 503 bursts and succeeds', async () => {
    sim.resetStats();
    sim.faults.burst503 = 2;
    const response = await new HttpClient(fast).request({ url: `${sim.url}/api/items` });
    expect(response.status).toBe(200);
    expect(response.attempts).toBe(3);
  });

  it('waits out Retry-After given as an HTTP-date', async () => {
    sim.resetStats();
    sim.faults.storm = { requests: 1, retryAfterS: 2, httpDate: true };
    const response = await new HttpClient(fast).request({ url: `${sim.url}/api/items` });
    expect(response.attempts).toBe(2);
    const [t0, t1] = sim.stats.times;
    // HTTP-dates have whole seconds: the wait is between 1 and 2 s.
    expect(t1! - t0!).toBeGreaterThanOrEqual(900);
  });

  it('fails fast on other 4xx with the body in the error, without retrying', async () => {
    sim.resetStats();
    const failed = new HttpClient(fast).request({ url: `${sim.url}/api/changes?cursor=garbage` });
    await expect(failed).rejects.toThrow(HttpError);
    await expect(failed).rejects.toThrow('answered 400: {"message":"invalid cursor garbage"}');
    expect(sim.stats.requests).toBe(1);
  });

  it('gives up at the deadline rather than wait past it, naming the URL', async () => {
    sim.faults.storm = { requests: 1, retryAfterS: 30 };
    const failed = new HttpClient({ ...fast, deadlineMs: 1000 }).request({ url: `${sim.url}/api/items?token=abc` });
    await expect(failed).rejects.toThrow(
      `GET ${sim.url}/api/items?token=*** gave up after the 1000 ms deadline; last: answered 429`,
    );
    sim.faults.storm = undefined;
  });

  it('gives up at once, naming the wait, when the shared bucket is blocked past the deadline', async () => {
    const slept: number[] = [];
    const spec = { name: uniqueName('bucket'), ratePerSecond: 10, burst: 1 };
    const bucket = new PgTokenBucket(pool, spec, async (ms) => {
      slept.push(ms);
    });
    // Some process got Retry-After: 3600.
    await bucket.block(3_600_000);
    sim.resetStats();
    const started = Date.now();
    const failed = new HttpClient({ ...fast, pacer: bucket, deadlineMs: 2000 }).request({
      url: `${sim.url}/api/items`,
    });
    await expect(failed).rejects.toThrow(
      /gave up after the 2000 ms deadline: the shared rate limit asks to wait 3\d{6} ms and \d+ ms are left$/,
    );
    expect(Date.now() - started).toBeLessThan(1000);
    expect(slept).toEqual([]);
    expect(sim.stats.requests).toBe(0);
  });

  it('aborts the wait for the shared bucket and a Retry-After wait when its signal aborts', async () => {
    const bucket = new PgTokenBucket(pool, { name: uniqueName('bucket'), ratePerSecond: 10, burst: 1 });
    await bucket.block(3000);
    const paced = new AbortController();
    const started = Date.now();
    setTimeout(() => paced.abort(new Error('SIGTERM')), 100);
    await expect(
      new HttpClient({ ...fast, pacer: bucket, signal: paced.signal }).request({ url: `${sim.url}/api/items` }),
    ).rejects.toThrow(`GET ${sim.url}/api/items aborted (Error: SIGTERM)`);
    expect(Date.now() - started).toBeLessThan(1500);

    sim.faults.storm = { requests: 1, retryAfterS: 3 };
    const retrying = new AbortController();
    const begun = Date.now();
    setTimeout(() => retrying.abort(new Error('SIGTERM')), 300);
    await expect(
      new HttpClient({ ...fast, signal: retrying.signal }).request({ url: `${sim.url}/api/items` }),
    ).rejects.toThrow('aborted (Error: SIGTERM)');
    expect(Date.now() - begun).toBeLessThan(1500);
    sim.faults.storm = undefined;
  });

  it('opens the circuit of a host after consecutive failures and probes after the cool-down', async () => {
    const client = new HttpClient({ ...fast, maxAttempts: 1, breaker: { failureThreshold: 2, cooldownMs: 300 } });
    const dead = 'http://127.0.0.1:9/'; // discard port: nothing listens
    await expect(client.request({ url: dead })).rejects.toThrow(HttpError);
    await expect(client.request({ url: dead })).rejects.toThrow(HttpError);
    await expect(client.request({ url: dead })).rejects.toThrow(CircuitOpenError);
    await new Promise((resolve) => setTimeout(resolve, 350));
    // Half-open: one probe goes out (and fails, re-opening the circuit).
    await expect(client.request({ url: dead })).rejects.not.toThrow(CircuitOpenError);
    await expect(client.request({ url: dead })).rejects.toThrow(CircuitOpenError);
  });

  it('lets a later request probe when the half-open probe ended without an outcome (the pacer threw)', async () => {
    let pacerDown = false;
    const pacer = {
      acquire: async () => {
        if (pacerDown) throw new Error('pacer: connection to Postgres lost');
        return 0;
      },
      observe: async () => undefined,
    };
    const client = new HttpClient({ ...fast, maxAttempts: 1, pacer, breaker: { failureThreshold: 1, cooldownMs: 50 } });
    const dead = 'http://127.0.0.2:9/';
    await expect(client.request({ url: dead })).rejects.toThrow(/ECONNREFUSED/);
    await new Promise((resolve) => setTimeout(resolve, 80));
    pacerDown = true;
    await expect(client.request({ url: dead })).rejects.toThrow('pacer: connection to Postgres lost');
    pacerDown = false;
    // Still half-open: the next request is the probe (it reaches the host and fails), not refused.
    await expect(client.request({ url: dead })).rejects.toThrow(/ECONNREFUSED/);
    await expect(client.request({ url: dead })).rejects.toThrow(CircuitOpenError);
  });

  it('does not send a request again, nor blame the host, when recording its answer fails', async () => {
    const pacer = {
      acquire: async () => 0,
      observe: async (): Promise<void> => {
        throw new Error('pacer: connection to Postgres lost');
      },
    };
    const circuits = new CircuitRegistry();
    const client = new HttpClient({ ...fast, pacer, breaker: { failureThreshold: 1, cooldownMs: 60_000, circuits } });
    sim.resetStats();
    await expect(client.request({ url: `${sim.url}/api/items` })).rejects.toThrow('pacer: connection to Postgres lost');
    expect(sim.stats.requests).toBe(1);
    // The host answered: its circuit is not open.
    pacer.observe = async () => undefined;
    await expect(client.request({ url: `${sim.url}/api/items` })).resolves.toMatchObject({ status: 200 });
  });

  it('shares the circuit of a host between clients: the client of the next run still fails fast', async () => {
    const breaker = { failureThreshold: 2, cooldownMs: 30_000 };
    const dead = 'http://127.0.0.3:9/';
    const firstRun = new HttpClient({ ...fast, maxAttempts: 2, breaker });
    await expect(firstRun.request({ url: dead })).rejects.toThrow(/ECONNREFUSED/);
    const nextRun = new HttpClient({ ...fast, maxAttempts: 2, breaker });
    await expect(nextRun.request({ url: dead })).rejects.toThrow(CircuitOpenError);
    // Other hosts are not affected.
    expect((await nextRun.request({ url: `${sim.url}/api/items` })).status).toBe(200);
  });

  it('keeps the circuits of at most maxHosts hosts, dropping the least recently touched', () => {
    const circuits = new CircuitRegistry(2);
    circuits.set('a', { failures: 1, probing: false });
    circuits.set('b', { failures: 1, probing: false });
    circuits.set('a', { failures: 2, probing: false });
    circuits.set('c', { failures: 1, probing: false });
    expect(circuits.size).toBe(2);
    expect(circuits.get('b')).toBeUndefined();
    expect(circuits.get('a')?.failures).toBe(2);
  });

  it('sends a non-idempotent request once: a repeat returns the stored answer', async () => {
    const client = new HttpClient({ ...fast, fingerprints: new PgFingerprintStore(pool) });
    const before = sim.stats.exportsCreated;
    const body = JSON.stringify({ report: `r-${Date.now()}` });
    const first = await client.request({ method: 'POST', url: `${sim.url}/api/exports`, headers: json, body });
    const again = await client.request({ method: 'POST', url: `${sim.url}/api/exports`, headers: json, body });
    expect(sim.stats.exportsCreated).toBe(before + 1);
    expect(again.body).toBe(first.body);
    expect(again.attempts).toBe(0);
  });

  it('does not repeat a non-idempotent request whose outcome is unknown', async () => {
    const client = new HttpClient({ ...fast, fingerprints: new PgFingerprintStore(pool) });
    sim.faults.burst503 = 1;
    const body = JSON.stringify({ report: `u-${Date.now()}` });
    await expect(
      client.request({ method: 'POST', url: `${sim.url}/api/exports`, headers: json, body }),
    ).rejects.toThrow('answered 503');
    const before = sim.stats.exportsCreated;
    await expect(
      client.request({ method: 'POST', url: `${sim.url}/api/exports`, headers: json, body }),
    ).rejects.toThrow('outcome is unknown');
    expect(sim.stats.exportsCreated).toBe(before);
  });
});
