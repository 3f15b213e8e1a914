import type { Pool, PoolClient } from '../../libs/db/index.ts';
import { withTransaction } from '../../libs/db/index.ts';
import { PgFingerprintStore } from '../../libs/http/fingerprints.ts';
import {
  HttpClient,
  HttpError,
  type HttpResponse,
  redactSecrets,
  requestFingerprint,
  type WaitReason,
} from '../../libs/http/index.ts';
import { appendEvents, type NewEvent, parseTime } from '../../libs/outbox/index.ts';
import { PgTokenBucket } from '../../libs/ratelimit/index.ts';
import type { SourceDefinition } from './definition.ts';
import type { PullMetrics } from './metrics.ts';

/**
 * Runs one pull of one declarative source: page through the API, turn records into events, and
 * commit events + checkpoint so that the checkpoint never covers data that is not stored.
 */

export interface Checkpoint {
  /** incremental cursor: the position of the next page to fetch (or of the last page, when done). */
  cursor?: string;
  /** incremental watermark: max updated_at committed; newest_first: max key committed. */
  watermark?: string;
  etag?: string;
  /** The server's poll interval (X-Poll-Interval): no run before this instant (ISO). */
  not_before?: string;
}

export interface RunStats {
  pages: number;
  records: number;
  accepted: number;
  duplicates: number;
  stale: number;
  quarantined: number;
  notModified: boolean;
  throttled: number;
  waitedMs: number;
  skipped?: string;
  /** Why the newest_first watermark was not moved, or what may have been missed (see README). */
  warning?: string;
  checkpoint: Checkpoint;
}

export interface PageProgress {
  page: number;
  url: string;
  records: number;
  accepted: number;
  duplicates: number;
  stale: number;
  quarantined: number;
}

export interface RunOptions {
  pool: Pool;
  /** Lease holder: every page transaction checks the lease is still ours (fencing). */
  owner: string;
  env?: NodeJS.ProcessEnv;
  onPage?: (progress: PageProgress) => void;
  onWait?: (wait: { url: string; reason: WaitReason; ms: number; status?: number }) => void;
  /** Aborted when renewing the lease found it lost: the run stops before its next request. */
  leaseLost?: AbortSignal;
  /** Aborted to stop (SIGTERM): waits and the request in flight end; committed pages stay committed. */
  signal?: AbortSignal;
  /** Overrides the definition's pacing (benchmarks, tests). */
  client?: HttpClient;
  metrics?: PullMetrics;
}

export class PageError extends Error {
  /** `url` is shown masked by redactSecrets; the engine also masks the source's own secrets (SecretMask). */
  constructor(url: string, problem: string) {
    super(`malformed page from ${redactSecrets(url)}: ${problem}; checkpoint not moved`);
    this.name = 'PageError';
  }
}

export class LeaseLostError extends Error {
  constructor(source: string) {
    super(`lease on source ${source} was lost (expired or taken over); page not committed`);
    this.name = 'LeaseLostError';
  }
}

export class AuthConfigError extends Error {
  constructor(source: string, field: string, variable: string) {
    super(`source ${source}: ${field}: environment variable ${variable} is not set`);
    this.name = 'AuthConfigError';
  }
}

type Json = Record<string, unknown>;

/** Shortest value masked by its text: shorter ones are no secrets worth the name and would mask at random. */
const MIN_SECRET_LENGTH = 4;

/**
 * Masks a source's secrets in whatever it records or prints: by parameter name in URLs (the API key's
 * query_param and params set from the environment, besides redactSecrets' own list), and by value in
 * any text (errors carry URLs and answers the HTTP client shaped without knowing these names).
 */
export class SecretMask {
  private readonly names: string[];
  private readonly values: string[];

  constructor(def: SourceDefinition, env: NodeJS.ProcessEnv) {
    const auth = def.auth;
    this.names = [...def.request.env_params];
    const values = [
      ...def.request.env_params.map((name) => def.request.params[name]),
      ...def.request.env_headers.map((name) => def.request.headers[name]),
    ];
    if (auth.type === 'api_key') {
      if (auth.query_param) this.names.push(auth.query_param);
      values.push(env[auth.key_env]);
    } else if (auth.type === 'bearer') values.push(env[auth.token_env]);
    else if (auth.type === 'oauth2_client_credentials') values.push(env[auth.client_secret_env]);
    const forms = new Set<string>();
    for (const value of values) {
      if (value === undefined || value.length < MIN_SECRET_LENGTH) continue;
      // As written, and as it appears inside a URL (percent-encoded, or form-encoded by URLSearchParams).
      forms.add(value);
      forms.add(encodeURIComponent(value));
      forms.add(new URLSearchParams({ v: value }).toString().slice(2));
    }
    // Longest first, so a value containing another is masked whole.
    this.values = [...forms].sort((a, b) => b.length - a.length);
  }

  text(text: string): string {
    let out = text;
    for (const value of this.values) out = out.split(value).join('***');
    return out;
  }

  url(url: string): string {
    return this.text(redactSecrets(url, this.names));
  }

  /** The same error with the secrets masked in its message, stack and URL. */
  error(error: unknown): unknown {
    if (!(error instanceof Error)) return error;
    error.message = this.text(error.message);
    if (error.stack) error.stack = this.text(error.stack);
    if (error instanceof HttpError) Object.assign(error, { url: this.url(error.url) });
    return error;
  }
}

/** Reads a dotted path ("data.items"); an empty path is the value itself. */
export function pick(value: unknown, dotted: string): unknown {
  if (dotted === '') return value;
  let current = value;
  for (const part of dotted.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Json)[part];
  }
  return current;
}

/** A record's version (newer wins): its updated_at as text for the event id, and in µs for comparisons. */
export interface Version {
  /** ISO-8601 in UTC: toISOString(), plus the sub-millisecond digits the API gave (trailing zeros dropped). */
  text: string;
  /** Microseconds since the epoch: the precision of Postgres' timestamptz (pull_entity_versions). */
  micros: bigint;
}

/**
 * The version of a parsed updated_at. Dates keep milliseconds only, so the digits after them are read
 * from the text: two versions in one millisecond stay two versions. A time given to the millisecond
 * (or coarser, or as epoch) keeps the id it always had (`toISOString()`), so re-runs still dedupe.
 */
export function versionOf(raw: unknown, at: Date): Version {
  const fraction =
    typeof raw === 'string' ? /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(\d+)/.exec(raw)?.[1] : undefined;
  const extra = (fraction ?? '').replace(/0+$/, '');
  return {
    text: extra ? at.toISOString().replace(/Z$/, `${extra}Z`) : at.toISOString(),
    micros: BigInt(at.getTime()) * 1000n + BigInt(extra.slice(0, 3).padEnd(3, '0')),
  };
}

/** The version in microseconds as ISO text, for a timestamptz parameter. */
const microsToIso = (micros: bigint): string =>
  new Date(Number(micros / 1000n)).toISOString().replace(/Z$/, `${String(micros % 1000n).padStart(3, '0')}Z`);

/**
 * RFC 8288: the target of rel="next", resolved against the request URL. Parsed link by link: optional
 * whitespace around ";", "," and "=", quoted or bare values, several relation types in one rel.
 */
export function nextLink(header: string | undefined, base: string): string | undefined {
  if (!header) return undefined;
  const n = header.length;
  let i = 0;
  const space = () => {
    while (i < n && /\s/.test(header[i]!)) i++;
  };
  /** Past the next "," that is not inside a quoted string (the end of a malformed link). */
  const skipLink = () => {
    let quoted = false;
    for (; i < n; i++) {
      if (header[i] === '"') quoted = !quoted;
      else if (header[i] === '\\' && quoted) i++;
      else if (header[i] === ',' && !quoted) break;
    }
  };
  while (i < n) {
    while (i < n && /[\s,]/.test(header[i]!)) i++;
    if (i >= n) break;
    if (header[i] !== '<') {
      skipLink();
      continue;
    }
    const close = header.indexOf('>', i);
    if (close < 0) break;
    const target = header.slice(i + 1, close);
    i = close + 1;
    const rels: string[] = [];
    for (;;) {
      space();
      if (header[i] !== ';') break;
      i++;
      space();
      const name = /^[^=;,\s]*/.exec(header.slice(i))![0];
      i += name.length;
      space();
      let value = '';
      if (header[i] === '=') {
        i++;
        space();
        if (header[i] === '"') {
          for (i++; i < n && header[i] !== '"'; i++) {
            if (header[i] === '\\') i++;
            value += header[i] ?? '';
          }
          i++;
        } else {
          value = /^[^;,\s]*/.exec(header.slice(i))![0];
          i += value.length;
        }
      }
      if (name.toLowerCase() === 'rel') rels.push(...value.toLowerCase().split(/\s+/));
    }
    if (rels.includes('next')) {
      try {
        return new URL(target, base).toString();
      } catch {
        return undefined;
      }
    }
    skipLink();
  }
  return undefined;
}

/** Compares keys numerically when both are integers (GitHub event ids), else as text. */
function compareKeys(a: string, b: string): number {
  if (/^\d+$/.test(a) && /^\d+$/.test(b)) return a.length - b.length || (a < b ? -1 : a > b ? 1 : 0);
  return a < b ? -1 : a > b ? 1 : 0;
}

interface CachedToken {
  token: string;
  expiresAt: number;
}

/** OAuth2 tokens by token URL, client, scope and secret: the scheduler reuses one across runs until it expires. */
const oauthTokens = new Map<string, CachedToken>();
/** Lifetime assumed when the token answer has no expires_in. */
const DEFAULT_TOKEN_LIFE_S = 60;

async function oauthToken(
  def: SourceDefinition,
  auth: Extract<SourceDefinition['auth'], { type: 'oauth2_client_credentials' }>,
  clientId: string,
  secret: string,
  client: HttpClient,
  renew: boolean,
): Promise<string> {
  // Hashed: the key does not hold the secret, and a changed secret gets a token of its own.
  const key = requestFingerprint('POST', auth.token_url, `${clientId}\n${auth.scope ?? ''}\n${secret}`);
  const cached = oauthTokens.get(key);
  if (cached && cached.expiresAt > Date.now() && !renew) return cached.token;
  const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: clientId, client_secret: secret });
  if (auth.scope) form.set('scope', auth.scope);
  const failed = (problem: string) =>
    new Error(`source ${def.name}: OAuth2 token request to ${redactSecrets(auth.token_url)} failed: ${problem}`);
  let answer: HttpResponse;
  try {
    // Asking for a token changes nothing on the server, so it is safe to retry.
    answer = await client.request({
      method: 'POST',
      url: auth.token_url,
      headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
      body: form.toString(),
      idempotent: true,
    });
  } catch (error) {
    throw failed((error as Error).message);
  }
  let parsed: { access_token?: unknown; expires_in?: unknown };
  try {
    parsed = JSON.parse(answer.body);
  } catch {
    throw failed('the answer is not JSON');
  }
  if (typeof parsed.access_token !== 'string' || parsed.access_token === '')
    throw failed('no access_token in the answer');
  const lifeS =
    typeof parsed.expires_in === 'number' && parsed.expires_in > 0 ? parsed.expires_in : DEFAULT_TOKEN_LIFE_S;
  // Renewed a little early (a tenth of its life, at most 30 s) so no request leaves with a token about to expire.
  const expiresAt = Date.now() + lifeS * 1000 - Math.min(30_000, lifeS * 100);
  oauthTokens.set(key, { token: parsed.access_token, expiresAt });
  return parsed.access_token;
}

/**
 * Auth headers and query parameters; called before every page, so an expired OAuth2 token is renewed
 * mid-run. `renew` fetches a new OAuth2 token even when the cached one has not expired yet.
 */
async function authorize(def: SourceDefinition, env: NodeJS.ProcessEnv, client: HttpClient, renew = false) {
  const headers: Record<string, string> = {};
  const query: Record<string, string> = {};
  const auth = def.auth;
  const need = (field: string, variable: string): string => {
    const value = env[variable];
    if (!value) throw new AuthConfigError(def.name, field, variable);
    return value;
  };
  if (auth.type === 'bearer') {
    const token = env[auth.token_env];
    if (token) headers.authorization = `Bearer ${token}`;
    else if (!auth.optional) need('auth.token_env', auth.token_env);
  } else if (auth.type === 'api_key') {
    const key = need('auth.key_env', auth.key_env);
    if (auth.header) headers[auth.header.toLowerCase()] = key;
    if (auth.query_param) query[auth.query_param] = key;
  } else if (auth.type === 'oauth2_client_credentials') {
    const clientId = need('auth.client_id_env', auth.client_id_env);
    const secret = need('auth.client_secret_env', auth.client_secret_env);
    headers.authorization = `Bearer ${await oauthToken(def, auth, clientId, secret, client, renew)}`;
  }
  return { headers, query };
}

export async function loadCheckpoint(pool: Pool | PoolClient, source: string): Promise<Checkpoint> {
  const { rows } = await pool.query<{ state: Checkpoint }>('SELECT state FROM pull_checkpoints WHERE source = $1', [
    source,
  ]);
  return rows[0]?.state ?? {};
}

async function saveCheckpoint(client: PoolClient, source: string, state: Checkpoint): Promise<void> {
  await client.query(
    `INSERT INTO pull_checkpoints (source, state) VALUES ($1, $2)
     ON CONFLICT (source) DO UPDATE SET state = EXCLUDED.state, updated_at = clock_timestamp()`,
    [source, JSON.stringify(state)],
  );
}

async function assertLease(client: PoolClient, source: string, owner: string): Promise<void> {
  // FOR SHARE: a process taking the lease over waits until this page is committed or rolled back.
  const { rowCount } = await client.query(
    `SELECT 1 FROM pull_leases WHERE source = $1 AND owner = $2 AND expires_at > clock_timestamp() FOR SHARE`,
    [source, owner],
  );
  if (!rowCount) throw new LeaseLostError(source);
}

interface Candidate {
  event: NewEvent;
  version?: Version;
}

/** Turns one page of records into events and quarantine rows; stores them (and maybe the checkpoint) in one transaction. */
async function commitPage(
  def: SourceDefinition,
  opts: RunOptions,
  shownUrl: string,
  page: number,
  records: unknown[],
  checkpoint: Checkpoint | undefined,
  runId: string,
): Promise<Omit<PageProgress, 'page' | 'url' | 'records'>> {
  const spec = def.records;
  const candidates: Candidate[] = [];
  const quarantine: Array<{ reason: string; record: unknown }> = [];
  for (const record of records) {
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      quarantine.push({ reason: 'record is not a JSON object', record: { value: record } });
      continue;
    }
    const key = pick(record, spec.primary_key);
    if ((typeof key !== 'string' && typeof key !== 'number') || key === '') {
      quarantine.push({ reason: `primary key ${spec.primary_key} is missing or not a string/number`, record });
      continue;
    }
    let updatedAt: Date | undefined;
    let version: Version | undefined;
    if (spec.updated_at) {
      updatedAt = parseTime(pick(record, spec.updated_at));
      if (updatedAt) version = versionOf(pick(record, spec.updated_at), updatedAt);
      if (!updatedAt) {
        quarantine.push({
          reason: `${spec.updated_at} is missing or not a time: ${JSON.stringify(pick(record, spec.updated_at))}`,
          record,
        });
        continue;
      }
    }
    const timeField = spec.event_time ?? spec.updated_at;
    const eventTime = timeField ? parseTime(pick(record, timeField)) : new Date();
    if (!eventTime) {
      quarantine.push({
        reason: `${timeField} is missing or not a time: ${JSON.stringify(pick(record, timeField!))}`,
        record,
      });
      continue;
    }
    const typeValue = spec.event_type_field ? pick(record, spec.event_type_field) : spec.event_type;
    if (typeof typeValue !== 'string' || typeValue === '') {
      quarantine.push({ reason: `event type field ${spec.event_type_field} is missing`, record });
      continue;
    }
    const entityKey = String(key);
    candidates.push({
      version,
      event: {
        source: def.name,
        // A newer version of a key is a new event; a re-delivery of the same version is a duplicate.
        eventId: version ? `${entityKey}@${version.text}` : entityKey,
        eventType: typeValue,
        entityKey,
        eventTime,
        payload: record as Json,
        lineage: { url: shownUrl, page: String(page), run: runId },
      },
    });
  }

  return withTransaction(opts.pool, async (client) => {
    await assertLease(client, def.name, opts.owner);
    let stale = 0;
    let keep = candidates;
    const versioned = candidates.filter((c) => c.version);
    if (versioned.length > 0) {
      const keys = [...new Set(versioned.map((c) => c.event.entityKey))];
      // In microseconds, exactly (a JS Date would cut them to milliseconds).
      const { rows } = await client.query<{ entity_key: string; micros: string }>(
        `SELECT entity_key, (extract(epoch FROM updated_at) * 1000000)::bigint::text AS micros
         FROM pull_entity_versions WHERE source = $1 AND entity_key = ANY($2) FOR UPDATE`,
        [def.name, keys],
      );
      const stored = new Map(rows.map((row) => [row.entity_key, BigInt(row.micros)]));
      keep = candidates.filter((c) => {
        const known = stored.get(c.event.entityKey);
        // Equal: the same version again, which the outbox reports as a duplicate.
        const older = c.version !== undefined && known !== undefined && c.version.micros < known;
        if (older) stale++;
        return !older;
      });
      const latest = new Map<string, Candidate>();
      for (const c of keep) {
        const seen = latest.get(c.event.entityKey);
        if (c.version && (!seen?.version || c.version.micros > seen.version.micros)) latest.set(c.event.entityKey, c);
      }
      if (latest.size > 0) {
        const newest = [...latest.values()];
        await client.query(
          `INSERT INTO pull_entity_versions (source, entity_key, updated_at, event_id)
           SELECT $1, * FROM unnest($2::text[], $3::timestamptz[], $4::text[])
           ON CONFLICT (source, entity_key) DO UPDATE SET updated_at = EXCLUDED.updated_at, event_id = EXCLUDED.event_id
           WHERE pull_entity_versions.updated_at < EXCLUDED.updated_at`,
          [
            def.name,
            newest.map((c) => c.event.entityKey),
            newest.map((c) => microsToIso(c.version!.micros)),
            newest.map((c) => c.event.eventId),
          ],
        );
      }
    }
    // Older versions first, so per-key order in the outbox follows updated_at.
    keep.sort((a, b) => {
      const [x, y] = [a.version?.micros ?? 0n, b.version?.micros ?? 0n];
      return x < y ? -1 : x > y ? 1 : 0;
    });
    const results = await appendEvents(
      client,
      keep.map((c) => c.event),
    );
    if (quarantine.length > 0) {
      await client.query(
        `INSERT INTO pull_quarantine (source, url, reason, record)
         SELECT $1, $2, * FROM unnest($3::text[], $4::jsonb[])
         ON CONFLICT (source, reason, md5(record::text)) DO NOTHING`,
        [def.name, shownUrl, quarantine.map((q) => q.reason), quarantine.map((q) => JSON.stringify(q.record))],
      );
    }
    if (checkpoint) await saveCheckpoint(client, def.name, checkpoint);
    const accepted = results.filter((r) => r.status === 'ACCEPTED').length;
    return { accepted, duplicates: results.length - accepted, stale, quarantined: quarantine.length };
  });
}

function buildClient(
  def: SourceDefinition,
  opts: RunOptions,
  counters: { throttled: number; waitedMs: number },
  mask: SecretMask,
) {
  const pacer = def.rate_limit
    ? new PgTokenBucket(opts.pool, {
        name: def.rate_limit.bucket,
        ratePerSecond: def.rate_limit.per_second,
        burst: def.rate_limit.burst,
      })
    : undefined;
  return new HttpClient({
    timeoutMs: def.request.timeout_ms,
    maxAttempts: def.retry.max_attempts,
    deadlineMs: def.retry.deadline_ms,
    pacer,
    fingerprints: new PgFingerprintStore(opts.pool),
    metrics: opts.metrics?.registry,
    // A stop or a lost lease ends a long wait (a shared bucket blocked by Retry-After, say) at once.
    signal: AbortSignal.any([opts.signal, opts.leaseLost].filter((s): s is AbortSignal => s !== undefined)),
    onWait: (wait) => {
      opts.metrics?.wait(def.name, wait.reason, wait.ms);
      if (wait.status === 429 || wait.reason === 'retry-after') counters.throttled++;
      counters.waitedMs += wait.ms;
      opts.onWait?.({ ...wait, url: mask.url(wait.url) });
    },
  });
}

export async function runSource(def: SourceDefinition, opts: RunOptions): Promise<RunStats> {
  const mask = new SecretMask(def, opts.env ?? process.env);
  try {
    return await runPages(def, opts, mask);
  } catch (error) {
    throw mask.error(error);
  }
}

async function runPages(def: SourceDefinition, opts: RunOptions, mask: SecretMask): Promise<RunStats> {
  const env = opts.env ?? process.env;
  const runId = `${opts.owner}@${Date.now()}`;
  const counters = { throttled: 0, waitedMs: 0 };
  const client = opts.client ?? buildClient(def, opts, counters, mask);
  const before = await loadCheckpoint(opts.pool, def.name);
  const stats: RunStats = {
    pages: 0,
    records: 0,
    accepted: 0,
    duplicates: 0,
    stale: 0,
    quarantined: 0,
    notModified: false,
    throttled: 0,
    waitedMs: 0,
    checkpoint: before,
  };
  if (before.not_before && Date.parse(before.not_before) > Date.now()) {
    stats.skipped = `the server asked not to poll before ${before.not_before}`;
    return stats;
  }

  const auth = await authorize(def, env, client);
  const pg = def.pagination;
  const inc = def.incremental;
  const params = new URLSearchParams({ ...def.request.params, ...auth.query });
  if (inc.type === 'watermark' && before.watermark) {
    // 1 ms more than the look-back: APIs read updated_after as strictly after, and a record stamped with
    // the watermark's very time may become visible only after the run that set it (dedupe absorbs the overlap).
    const from = new Date(Date.parse(before.watermark) - inc.lookback_ms - 1);
    params.set(inc.param, inc.format === 'iso' ? from.toISOString() : String(Math.floor(from.getTime() / 1000)));
  }
  if (pg.type === 'cursor' && inc.type === 'cursor' && before.cursor) params.set(pg.cursor_param, before.cursor);
  if (pg.type === 'keyset') {
    if (pg.limit_param && pg.limit) params.set(pg.limit_param, String(pg.limit));
    if (inc.type === 'cursor' && before.cursor) params.set(pg.param, before.cursor);
  }
  if (pg.type === 'offset') {
    params.set(pg.limit_param, String(pg.limit));
    params.set(pg.offset_param, '0');
  }
  if (pg.type === 'page') {
    params.set(pg.page_param, String(pg.start));
    if (pg.size_param) params.set(pg.size_param, String(pg.size));
  }
  const query = params.toString();
  let url = `${def.request.base_url}${def.request.path}${query ? `?${query}` : ''}`;
  let position = before.cursor;
  let maxUpdated = before.watermark;
  let maxKey = before.watermark;
  let firstEtag: string | undefined;
  /** Every URL requested in this run: a next page among them is a pagination loop. */
  const requested = new Set([new URL(url).toString()]);
  let pollSeconds: number | undefined;
  /** The run stopped at max_pages while there was a next page. */
  let cutShort = false;
  /** newest_first: a record at or below the old watermark was read. */
  let stopped = false;
  /**
   * Watermark: the server's clock when the run began (the first answer's Date header, else ours now):
   * no watermark is committed later than it, and a record stamped at or after it changed during the run.
   */
  let runStart = Date.now();
  /** Watermark: max updated_at of the first page, and whether any record changed during the run. */
  let firstPageMax: string | undefined;
  let changedDuringRun = false;
  let future: { count: number; latest: string } | undefined;

  for (let page = 1; ; page++) {
    if (opts.leaseLost?.aborted) throw new LeaseLostError(def.name);
    const { headers: authHeaders } = page === 1 ? auth : await authorize(def, env, client);
    const headers: Record<string, string> = { accept: 'application/json', ...def.request.headers, ...authHeaders };
    if (page === 1 && def.etag && before.etag) headers['if-none-match'] = before.etag;
    const fetchPage = (auth: Record<string, string>) =>
      client.request({
        method: def.request.method,
        url,
        headers: { ...headers, ...auth },
        body: def.request.body,
        idempotent: true,
      });
    let response: HttpResponse;
    try {
      response = await fetchPage(authHeaders);
    } catch (error) {
      // A provider may revoke a token before its expires_in (rotation, restart): renew it once, ask again.
      const revoked =
        error instanceof HttpError && error.status === 401 && def.auth.type === 'oauth2_client_credentials';
      if (!revoked) throw error;
      response = await fetchPage((await authorize(def, env, client, true)).headers);
    }
    if (page === 1) {
      const serverNow = Date.parse(response.headers.date ?? '');
      if (!Number.isNaN(serverNow)) runStart = serverNow;
      firstEtag = response.headers.etag;
      const poll = def.poll_interval_header
        ? Number(response.headers[def.poll_interval_header.toLowerCase()])
        : Number.NaN;
      if (Number.isFinite(poll) && poll > 0) pollSeconds = poll;
    }
    if (response.status === 304) {
      stats.notModified = true;
      break;
    }
    let body: unknown;
    try {
      body = JSON.parse(response.body);
    } catch (error) {
      throw new PageError(url, `body is not JSON (${(error as Error).message})`);
    }
    const records = pick(body, def.records.path);
    if (!Array.isArray(records)) {
      throw new PageError(
        url,
        `records.path "${def.records.path}" is not an array (got ${records === null ? 'null' : typeof records})`,
      );
    }

    // Work out the next request before committing, so a page that cannot be followed is not half-committed.
    let next: string | undefined;
    const setParam = (name: string, value: string) => {
      const target = new URL(url);
      target.searchParams.set(name, value);
      return target.toString();
    };
    let stop = false;
    if (pg.type === 'cursor') {
      const value = pick(body, pg.cursor_path);
      if (
        value !== undefined &&
        value !== null &&
        value !== '' &&
        typeof value !== 'string' &&
        typeof value !== 'number'
      ) {
        throw new PageError(url, `cursor at ${pg.cursor_path} is not a string`);
      }
      const cursor = value === undefined || value === null || value === '' ? undefined : String(value);
      if (cursor && cursor !== position) {
        next = setParam(pg.cursor_param, cursor);
        position = cursor;
      }
    } else if (pg.type === 'keyset') {
      let last: string | undefined;
      for (const record of records) {
        const value = pick(record, pg.field);
        if (typeof value === 'string' || typeof value === 'number') {
          if (last === undefined || compareKeys(String(value), last) > 0) last = String(value);
        }
      }
      const full = pg.limit === undefined ? records.length > 0 : records.length >= pg.limit;
      const current = new URL(url).searchParams.get(pg.param);
      if (full && last !== undefined && current !== null && compareKeys(last, current) <= 0) {
        // A page of one tied value (or going backwards) would ask for the same page again and again.
        throw new PageError(url, `keyset: the page's highest ${pg.field} ${last} is not above ${pg.param}=${current}`);
      }
      if (last !== undefined) position = last;
      if (full && last !== undefined) next = setParam(pg.param, last);
    } else if (pg.type === 'after_last') {
      const more = pick(body, pg.has_more_path);
      if (typeof more !== 'boolean') throw new PageError(url, `${pg.has_more_path} is not true or false`);
      if (more && records.length > 0) {
        const last = pick(records[records.length - 1], pg.field);
        if (typeof last !== 'string' && typeof last !== 'number') {
          throw new PageError(url, `the last record's ${pg.field} is not a string or number`);
        }
        next = setParam(pg.param, String(last));
      }
    } else if (pg.type === 'offset') {
      const offset = Number(new URL(url).searchParams.get(pg.offset_param) ?? 0);
      if (records.length >= pg.limit) next = setParam(pg.offset_param, String(offset + records.length));
    } else if (pg.type === 'page') {
      const current = Number(new URL(url).searchParams.get(pg.page_param) ?? pg.start);
      if (records.length >= pg.size) next = setParam(pg.page_param, String(current + 1));
    } else if (pg.type === 'link') {
      next = nextLink(response.headers.link, url);
      // A next link that is there but cannot be read must not look like the last page.
      if (!next && /rel\s*=\s*"?[^";,]*\bnext\b/i.test(response.headers.link ?? '')) {
        throw new PageError(
          url,
          `the Link header names a next page that cannot be read: ${mask.text(response.headers.link!)}`,
        );
      }
    }

    if (next) {
      const target = new URL(next);
      const origin = new URL(url).origin;
      // The credentials (bearer / OAuth2 token, API key) are for the source's server only.
      if (target.origin !== origin) {
        throw new PageError(url, `the next page ${mask.url(next)} is on another origin than ${origin}; not followed`);
      }
      // A next page already asked for in this run (a Link to itself, a cursor cycle) would never end.
      if (requested.has(target.toString())) {
        throw new PageError(url, `the next page ${mask.url(next)} was already requested in this run (a loop)`);
      }
      requested.add(target.toString());
    }

    if (inc.type === 'newest_first') {
      for (const record of records) {
        const value = pick(record, inc.field);
        if (typeof value !== 'string' && typeof value !== 'number') continue;
        const key = String(value);
        if (before.watermark && compareKeys(key, before.watermark) <= 0) stop = true;
        if (maxKey === undefined || compareKeys(key, maxKey) > 0) maxKey = key;
      }
    }
    if (inc.type === 'watermark' && def.records.updated_at) {
      for (const record of records) {
        const at = parseTime(pick(record, def.records.updated_at));
        if (!at) continue;
        if (!maxUpdated || at.getTime() > Date.parse(maxUpdated)) maxUpdated = at.toISOString();
        if (page === 1 && (!firstPageMax || at.getTime() > Date.parse(firstPageMax))) firstPageMax = at.toISOString();
        if (at.getTime() >= runStart) {
          changedDuringRun = true;
          if (!future || at.toISOString() > future.latest)
            future = { count: future?.count ?? 0, latest: at.toISOString() };
          future.count++;
        }
      }
    }

    const pageCheckpoint = inc.type === 'cursor' ? { ...before, cursor: position } : undefined;
    const result = await commitPage(def, opts, mask.url(url), page, records, pageCheckpoint, runId);
    stats.pages++;
    stats.records += records.length;
    stats.accepted += result.accepted;
    stats.duplicates += result.duplicates;
    stats.stale += result.stale;
    stats.quarantined += result.quarantined;
    if (pageCheckpoint) stats.checkpoint = pageCheckpoint;
    opts.metrics?.page(def.name, { records: records.length, ...result });
    opts.onPage?.({ page, url: mask.url(url), records: records.length, ...result });

    if (stop) stopped = true;
    if (stop || !next) break;
    if (def.max_pages !== undefined && page >= def.max_pages) {
      cutShort = true;
      break;
    }
    url = next;
  }

  // Watermarks, ETags and poll intervals cover the whole run: committed only now that every page is stored.
  const final: Checkpoint = { ...stats.checkpoint };
  if (inc.type === 'watermark' && maxUpdated) {
    let watermark = maxUpdated;
    // Offset / page numbers / Link pages are positions: a record updated while the run pages moves to
    // the end of the list and shifts the ones after it back, so one of them may be skipped; its
    // updated_at lies above the first page's. Then the watermark only passes the first page, and the
    // next run (asking from there) reads the rest again and catches what was skipped.
    const positional = pg.type === 'offset' || pg.type === 'page' || pg.type === 'link';
    if (positional && changedDuringRun) {
      watermark = [before.watermark, firstPageMax].reduce<string>(
        (a, b) => (b !== undefined && Date.parse(b) > Date.parse(a) ? b : a),
        firstPageMax ?? before.watermark ?? maxUpdated,
      );
    }
    // Never past the run's start: a record dated in the future (a bad clock, a 2099 placeholder) would
    // otherwise push the watermark past every real update that follows.
    if (Date.parse(watermark) > runStart) watermark = new Date(runStart).toISOString();
    final.watermark = watermark;
    if (future) {
      stats.warning = `${future.count} record(s) stamped at or after the run's start (latest ${future.latest}): watermark held at ${watermark}`;
    }
  }
  if (inc.type === 'newest_first' && maxKey) {
    // Newest first, the watermark may only pass what the run read down to: moved when the run reached
    // the old watermark (or there was none), or read the whole feed the API serves. A run cut short by
    // max_pages keeps it, so the next run pages down to it again rather than skipping the gap for good.
    const reached = !before.watermark || stopped;
    if (reached || !cutShort) final.watermark = maxKey;
    if (!reached && cutShort) {
      stats.warning = `max_pages (${def.max_pages}) reached before the last committed key ${before.watermark}: watermark not moved`;
    } else if (!reached) {
      stats.warning = `the feed ended before the last committed key ${before.watermark}: what lies between is beyond the API's reach`;
    }
  }
  if (def.etag && firstEtag && !stats.notModified) final.etag = firstEtag;
  if (pollSeconds) final.not_before = new Date(Date.now() + pollSeconds * 1000).toISOString();
  else delete final.not_before;
  await withTransaction(opts.pool, async (tx) => {
    await assertLease(tx, def.name, opts.owner);
    await saveCheckpoint(tx, def.name, final);
  });
  stats.checkpoint = final;
  stats.throttled = counters.throttled;
  stats.waitedMs = counters.waitedMs;
  return stats;
}
