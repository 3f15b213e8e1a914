import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { Counter, Gauge, type Registry } from 'prom-client';
import { type Dispatcher, request as undiciRequest } from 'undici';

/**
 * The one HTTP client every puller uses: timeouts, retries with full-jitter backoff (network errors,
 * 429 and 5xx only), Retry-After and reset headers, a deadline, a per-host circuit breaker, optional
 * pacing by a shared token bucket, and request fingerprints so a non-idempotent call is sent once.
 */

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  url: string;
  attempts: number;
}

export interface RequestSpec {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
  /** Defaults to true for GET/HEAD/PUT/DELETE/OPTIONS, false otherwise (POST, PATCH). */
  idempotent?: boolean;
}

export interface AcquireOptions {
  /** A longer wait is not started and takes no token: acquire() rejects with PacerWaitError at once. */
  maxWaitMs?: number;
  /** Aborts the wait (rejecting with the signal's reason); the token taken stays spent. */
  signal?: AbortSignal;
}

/** The pacer would make the caller wait longer than it may (e.g. past its request's deadline). */
export class PacerWaitError extends Error {
  constructor(
    readonly waitMs: number,
    readonly maxWaitMs: number,
    pacer: string,
  ) {
    super(`${pacer} asks to wait ${Math.ceil(waitMs)} ms, longer than the ${Math.floor(maxWaitMs)} ms allowed`);
    this.name = 'PacerWaitError';
  }
}

/** Paces requests (e.g. a token bucket shared by all processes) and learns from the server's answers. */
export interface Pacer {
  /**
   * Resolves when a request may be sent; returns the milliseconds waited. The wait is known before it
   * starts: one longer than maxWaitMs is refused with PacerWaitError instead of slept.
   */
  acquire(options?: AcquireOptions): Promise<number>;
  observe(status: number, headers: Record<string, string>): Promise<void>;
}

export type StoredResponse = Pick<HttpResponse, 'status' | 'headers' | 'body'>;

/** Remembers non-idempotent requests by fingerprint (see PgFingerprintStore). */
export interface FingerprintStore {
  /** 'new' when this call may send; a stored response when it was sent and answered before. */
  begin(fingerprint: string, method: string, url: string): Promise<'new' | StoredResponse>;
  /** The server answered 2xx/3xx: keep the answer for every later identical call. */
  complete(fingerprint: string, response: StoredResponse): Promise<void>;
  /** The server refused it (4xx): it was not carried out, so a later call may send it again. */
  forget(fingerprint: string): Promise<void>;
}

export type WaitReason = 'retry-after' | 'backoff' | 'rate-limit';

export interface HttpClientOptions {
  /** Per attempt, headers and body included. */
  timeoutMs?: number;
  maxAttempts?: number;
  /** Total time for one request() including every retry and wait. */
  deadlineMs?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Circuit state lives in `circuits`, by default the process-wide `sharedCircuits`. */
  breaker?: { failureThreshold?: number; cooldownMs?: number; circuits?: CircuitRegistry };
  pacer?: Pacer;
  fingerprints?: FingerprintStore;
  metrics?: Registry;
  dispatcher?: Dispatcher;
  /** Called before every wait, for progress output. */
  onWait?: (wait: { url: string; reason: WaitReason; ms: number; status?: number }) => void;
  /** Aborts every wait (pacer, backoff, Retry-After) and the request in flight, e.g. on SIGTERM. */
  signal?: AbortSignal;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  random?: () => number;
}

export class HttpError extends Error {
  constructor(
    message: string,
    readonly url: string,
    readonly status?: number,
    readonly body?: string,
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export class CircuitOpenError extends HttpError {
  constructor(host: string, url: string, retryInMs: number) {
    super(`circuit open for ${host}: too many consecutive failures; next probe in ${Math.ceil(retryInMs)} ms`, url);
    this.name = 'CircuitOpenError';
  }
}

export class UnknownOutcomeError extends HttpError {
  constructor(method: string, url: string, fingerprint: string) {
    super(
      `${method} ${url} was sent before and its outcome is unknown (fingerprint ${fingerprint}); ` +
        'not repeating a non-idempotent request. Check the server, then delete the row from http_request_fingerprints to allow it again.',
      url,
    );
    this.name = 'UnknownOutcomeError';
  }
}

const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
const SECRET_PARAMS = /^(api[_-]?key|key|token|access[_-]?token|client[_-]?secret|secret|password|sig|signature)$/i;
const BODY_IN_ERROR = 500;

/**
 * The identity of a request for idempotency: sha256 of method, url and body, each preceded by its
 * length in UTF-8 bytes ("<bytes>:<part>"), so no two different requests share an encoding (a plain
 * concatenation made url + "x" with no body the same request as url with body "x").
 */
export function requestFingerprint(method: string, url: string, body = ''): string {
  const hash = createHash('sha256');
  for (const part of [method.toUpperCase(), url, body]) hash.update(`${Buffer.byteLength(part)}:`).update(part);
  return hash.digest('hex');
}

/**
 * The URL with secret-looking query values masked, for logs, errors and stored rows. `alsoSecret`
 * names more parameters to mask (compared case-insensitively), e.g. a source's API key parameter
 * (`appid`, `private_token`) that the fixed list of names cannot know.
 */
export function redactSecrets(url: string, alsoSecret: readonly string[] = []): string {
  const extra = new Set(alsoSecret.map((name) => name.toLowerCase()));
  try {
    const parsed = new URL(url);
    for (const name of [...parsed.searchParams.keys()]) {
      if (SECRET_PARAMS.test(name) || extra.has(name.toLowerCase())) parsed.searchParams.set(name, '***');
    }
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<unparseable url>';
  }
}

/**
 * How long the server asked us to wait: Retry-After (seconds or HTTP-date), else X-RateLimit-Reset /
 * RateLimit-Reset: above 1e11 epoch milliseconds, above 1e9 epoch seconds (GitHub), otherwise seconds
 * from now.
 */
export function serverWaitMs(headers: Record<string, string>, nowMs = Date.now()): number | undefined {
  const retryAfter = headers['retry-after']?.trim();
  if (retryAfter) {
    const whole = retryAfterMs(retryAfter, nowMs);
    if (whole !== undefined) return whole;
    // A header sent twice arrives joined ("120, 120"): the first value counts. An HTTP-date has a
    // comma after its weekday, so a value that starts with a word takes the text up to the next comma.
    const first = /^([A-Za-z]+,[^,]*|[^,]*)/.exec(retryAfter)?.[1]?.trim();
    const firstMs = first ? retryAfterMs(first, nowMs) : undefined;
    if (firstMs !== undefined) return firstMs;
  }
  // Sent twice, the values arrive joined ("1700000000, 1700000000"): the first counts.
  const reset = (headers['x-ratelimit-reset'] ?? headers['ratelimit-reset'])?.split(',')[0]?.trim();
  if (reset && /^\d+(\.\d+)?$/.test(reset)) {
    const value = Number(reset);
    // Epoch milliseconds (after 1973 in ms; as seconds, past the year 5000).
    if (value > 1e11) return Math.max(0, value - nowMs);
    // Epoch seconds, as GitHub sends (after 2001).
    if (value > 1e9) return Math.max(0, value * 1000 - nowMs);
    // Seconds from now, as the IETF RateLimit-Reset draft and many APIs send.
    return value * 1000;
  }
  return undefined;
}

/** One Retry-After value: delay-seconds or an HTTP-date (which always has letters: day, month, GMT). */
function retryAfterMs(value: string, nowMs: number): number | undefined {
  if (/^\d+(\.\d+)?$/.test(value)) return Number(value) * 1000;
  // Date.parse is lenient ("5, 10" is 10 May 2001), so only text with letters may be a date.
  const at = /[A-Za-z]/.test(value) ? Date.parse(value) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** GitHub signals an exhausted quota with 403 and X-RateLimit-Remaining: 0 rather than 429. */
function isRateLimited(status: number, headers: Record<string, string>): boolean {
  return status === 429 || (status === 403 && headers['x-ratelimit-remaining'] === '0');
}

function flattenHeaders(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (value !== undefined) out[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : value;
  }
  return out;
}

export interface HostCircuit {
  failures: number;
  openedAt?: number;
  probing: boolean;
}

/**
 * Circuit state by host, bounded: only hosts with failures are kept, and past `maxHosts` the one
 * least recently touched is dropped (it then starts closed again, as a new host does).
 */
export class CircuitRegistry {
  private readonly hosts = new Map<string, HostCircuit>();

  constructor(readonly maxHosts = 1000) {}

  get size(): number {
    return this.hosts.size;
  }

  get(host: string): HostCircuit | undefined {
    return this.hosts.get(host);
  }

  set(host: string, circuit: HostCircuit): void {
    this.hosts.delete(host);
    this.hosts.set(host, circuit);
    for (const oldest of this.hosts.keys()) {
      if (this.hosts.size <= this.maxHosts) break;
      this.hosts.delete(oldest);
    }
  }

  delete(host: string): void {
    this.hosts.delete(host);
  }
}

/**
 * Shared by every HttpClient of the process (unless one is given its own), so a client built for the
 * next run of a source still sees the open circuit of a dead host and fails fast.
 */
export const sharedCircuits = new CircuitRegistry();

/** Opens after N consecutive failures of one host; after the cool-down one probe decides. */
class CircuitBreaker {
  constructor(
    private readonly hosts: CircuitRegistry,
    private readonly threshold: number,
    private readonly cooldownMs: number,
    private readonly gauge?: Gauge,
    private readonly opens?: Counter,
  ) {}

  /** Throws while the circuit is open; true when this call is the one probe of a half-open circuit. */
  enter(host: string, url: string): boolean {
    const circuit = this.hosts.get(host);
    if (circuit?.openedAt === undefined) return false;
    const waited = Date.now() - circuit.openedAt;
    if (waited < this.cooldownMs || circuit.probing) {
      throw new CircuitOpenError(host, url, Math.max(0, this.cooldownMs - waited));
    }
    circuit.probing = true;
    return true;
  }

  /** The probe ended without an outcome (e.g. the pacer threw): the next request may probe. */
  release(host: string): void {
    const circuit = this.hosts.get(host);
    if (circuit) circuit.probing = false;
  }

  succeeded(host: string): void {
    this.hosts.delete(host);
    this.gauge?.set({ host }, 0);
  }

  failed(host: string): void {
    const circuit = this.hosts.get(host) ?? { failures: 0, probing: false };
    circuit.failures += 1;
    if (circuit.probing || circuit.failures >= this.threshold) {
      circuit.openedAt = Date.now();
      circuit.probing = false;
      this.gauge?.set({ host }, 1);
      this.opens?.inc({ host });
    }
    this.hosts.set(host, circuit);
  }
}

function metric<T>(registry: Registry | undefined, name: string, create: (registers: Registry[]) => T): T | undefined {
  if (!registry) return undefined;
  return (registry.getSingleMetric(name) as T | undefined) ?? create([registry]);
}

export class HttpClient {
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly deadlineMs: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly breaker: CircuitBreaker;
  private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  private readonly random: () => number;
  private readonly requests?: Counter;
  private readonly retries?: Counter;

  constructor(private readonly options: HttpClientOptions = {}) {
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.deadlineMs = options.deadlineMs ?? 300_000;
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.sleep = options.sleep ?? ((ms, signal) => delay(ms, undefined, { signal }));
    this.random = options.random ?? Math.random;
    const registry = options.metrics;
    this.requests = metric(
      registry,
      'conveyor_http_requests_total',
      (registers) =>
        new Counter({
          name: 'conveyor_http_requests_total',
          help: 'HTTP attempts by host and status',
          labelNames: ['host', 'status'],
          registers,
        }),
    );
    this.retries = metric(
      registry,
      'conveyor_http_retries_total',
      (registers) =>
        new Counter({
          name: 'conveyor_http_retries_total',
          help: 'HTTP retries by host and reason',
          labelNames: ['host', 'reason'],
          registers,
        }),
    );
    const circuit = metric(
      registry,
      'conveyor_http_circuit_open',
      (registers) =>
        new Gauge({
          name: 'conveyor_http_circuit_open',
          help: '1 while the circuit of a host is open',
          labelNames: ['host'],
          registers,
        }),
    );
    const opens = metric(
      registry,
      'conveyor_http_circuit_opens_total',
      (registers) =>
        new Counter({
          name: 'conveyor_http_circuit_opens_total',
          help: 'Times the circuit of a host opened (or re-opened after a failed probe)',
          labelNames: ['host'],
          registers,
        }),
    );
    this.breaker = new CircuitBreaker(
      options.breaker?.circuits ?? sharedCircuits,
      options.breaker?.failureThreshold ?? 5,
      options.breaker?.cooldownMs ?? 30_000,
      circuit,
      opens,
    );
  }

  /**
   * Sends the request, retrying what is safe to retry. Resolves with any 2xx/3xx response; throws
   * HttpError for other 4xx (with the body), or when attempts or the deadline run out.
   */
  async request(spec: RequestSpec): Promise<HttpResponse> {
    const method = (spec.method ?? 'GET').toUpperCase();
    const idempotent = spec.idempotent ?? IDEMPOTENT_METHODS.has(method);
    const shownUrl = redactSecrets(spec.url);
    const host = new URL(spec.url).host;
    const store = idempotent ? undefined : this.options.fingerprints;
    const fingerprint = store ? requestFingerprint(method, spec.url, spec.body) : undefined;
    if (store && fingerprint) {
      const earlier = await store.begin(fingerprint, method, shownUrl);
      if (earlier !== 'new') return { ...earlier, url: spec.url, attempts: 0 };
    }

    const started = Date.now();
    let lastProblem = '';
    const { signal } = this.options;
    const aborted = () =>
      new HttpError(`${method} ${shownUrl} aborted (${String(signal?.reason ?? 'signal')})`, shownUrl);
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw aborted();
      const probe = this.breaker.enter(host, shownUrl);
      let waitMs: number;
      let reason: WaitReason = 'backoff';
      let status: number | undefined;
      let retryReason: string;
      // A probe that ends without an outcome (the pacer or the store threw) must not leave the
      // circuit half-open with nobody probing: every later request would be refused.
      try {
        if (this.options.pacer) {
          // The shared bucket may be blocked for an hour by some process's Retry-After: a wait past
          // the deadline is refused before it starts, not slept through while holding the caller up.
          const left = Math.max(0, this.deadlineMs - (Date.now() - started));
          let waited: number;
          try {
            waited = await this.options.pacer.acquire({ maxWaitMs: left, signal });
          } catch (error) {
            if (signal?.aborted) throw aborted();
            if (!(error instanceof PacerWaitError)) throw error;
            throw new HttpError(
              `${method} ${shownUrl} gave up after the ${this.deadlineMs} ms deadline: the shared rate limit asks ` +
                `to wait ${Math.ceil(error.waitMs)} ms and ${Math.floor(left)} ms are left` +
                (lastProblem ? `; last: ${lastProblem}` : ''),
              shownUrl,
            );
          }
          if (waited > 0) this.options.onWait?.({ url: shownUrl, reason: 'rate-limit', ms: waited });
        }
        let response: Omit<HttpResponse, 'url' | 'attempts'> | undefined;
        let sendError: unknown;
        try {
          response = await this.send(method, spec);
        } catch (error) {
          sendError = error;
        }
        if (!response) {
          const error = sendError;
          // Aborted by the caller: says nothing about the host.
          if (signal?.aborted) throw aborted();
          const code = (error as { code?: string }).code ?? (error as Error).name;
          lastProblem = `${code}: ${(error as Error).message}`;
          this.requests?.inc({ host, status: 'error' });
          this.breaker.failed(host);
          // Connection refused means nothing was sent; any other network error may have been carried out.
          if (!idempotent && code !== 'ECONNREFUSED') {
            throw new HttpError(`${method} ${shownUrl} failed (${lastProblem}); not retried: not idempotent`, shownUrl);
          }
          waitMs = this.backoff(attempt);
          retryReason = 'network';
        } else {
          // The answer arrived: what follows (the shared bucket, the fingerprint store) failing is not
          // the host's fault and must not send the request again; its error goes to the caller as it is.
          this.requests?.inc({ host, status: String(response.status) });
          await this.options.pacer?.observe(response.status, response.headers);
          const { headers } = response;
          status = response.status;
          if (status < 400) {
            this.breaker.succeeded(host);
            if (store && fingerprint) await store.complete(fingerprint, response);
            return { ...response, url: spec.url, attempts: attempt };
          }
          const snippet = response.body.slice(0, BODY_IN_ERROR);
          if (status >= 500) this.breaker.failed(host);
          else this.breaker.succeeded(host);
          const rateLimited = isRateLimited(status, headers);
          // A 5xx may have been carried out: only idempotent requests retry it.
          const retryable = rateLimited || (status >= 500 && idempotent);
          if (!retryable) {
            if (store && fingerprint && status < 500) await store.forget(fingerprint);
            throw new HttpError(`${method} ${shownUrl} answered ${status}: ${snippet}`, shownUrl, status, snippet);
          }
          lastProblem = `answered ${status}: ${snippet}`;
          const asked = serverWaitMs(headers);
          if (asked !== undefined && (rateLimited || status === 503)) {
            // Never earlier than the server asked; a little jitter so processes do not return in lockstep.
            waitMs = asked + this.random() * Math.min(1000, asked * 0.1 + 50);
            reason = 'retry-after';
          } else {
            waitMs = this.backoff(attempt);
          }
          retryReason = String(status);
        }
      } finally {
        if (probe) this.breaker.release(host);
      }
      const elapsed = Date.now() - started;
      if (attempt >= this.maxAttempts || elapsed + waitMs > this.deadlineMs) {
        const limit = attempt >= this.maxAttempts ? `${attempt} attempts` : `the ${this.deadlineMs} ms deadline`;
        throw new HttpError(`${method} ${shownUrl} gave up after ${limit}; last: ${lastProblem}`, shownUrl);
      }
      // Counted only here: an attempt after which the client gives up is not a retry.
      this.retries?.inc({ host, reason: retryReason });
      this.options.onWait?.({ url: shownUrl, reason, ms: waitMs, status });
      try {
        await this.sleep(waitMs, signal);
      } catch (error) {
        if (signal?.aborted) throw aborted();
        throw error;
      }
    }
  }

  /** Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]. */
  private backoff(attempt: number): number {
    return this.random() * Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
  }

  private async send(method: string, spec: RequestSpec): Promise<Omit<HttpResponse, 'url' | 'attempts'>> {
    const response = await undiciRequest(spec.url, {
      method: method as Dispatcher.HttpMethod,
      headers: spec.headers,
      body: spec.body,
      signal: this.options.signal
        ? AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.options.signal])
        : AbortSignal.timeout(this.timeoutMs),
      dispatcher: this.options.dispatcher,
    });
    const body = await response.body.text();
    return { status: response.statusCode, headers: flattenHeaders(response.headers), body };
  }
}
