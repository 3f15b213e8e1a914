import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ENV_NAME, projectPath } from '../../libs/config/index.ts';

/**
 * A REST source is a definition file (YAML or JSON), not code. This module loads and validates one,
 * failing with an error that names the file and the field. The format is documented in README.md.
 */

export type Auth =
  | { type: 'none' }
  | { type: 'bearer'; token_env: string; optional: boolean }
  | { type: 'api_key'; key_env: string; header?: string; query_param?: string }
  | {
      type: 'oauth2_client_credentials';
      token_url: string;
      client_id_env: string;
      client_secret_env: string;
      scope?: string;
    };

export type Pagination =
  | { type: 'none' }
  | { type: 'cursor'; cursor_path: string; cursor_param: string }
  | { type: 'offset'; offset_param: string; limit_param: string; limit: number }
  | { type: 'page'; page_param: string; size_param?: string; size: number; start: number }
  | { type: 'link' }
  | { type: 'keyset'; param: string; field: string; limit_param?: string; limit?: number }
  /** Stripe-style lists: the next page starts after the last record's `field`, while `has_more_path` is true. */
  | { type: 'after_last'; param: string; field: string; has_more_path: string };

export type Incremental =
  | { type: 'none' }
  /** Ascending: the pagination position (cursor or keyset value) is the checkpoint, committed per page. */
  | { type: 'cursor' }
  /** `param` = last max(updated_at) minus look-back; the watermark is committed after the whole run. */
  | { type: 'watermark'; param: string; lookback_ms: number; format: 'iso' | 'epoch_s' }
  /** Newest first (e.g. GitHub events): page until a record at or below the watermark; commit at the end. */
  | { type: 'newest_first'; field: string };

export interface SourceDefinition {
  name: string;
  file: string;
  description?: string;
  request: {
    base_url: string;
    path: string;
    method: 'GET' | 'POST';
    params: Record<string, string>;
    headers: Record<string, string>;
    body?: string;
    timeout_ms: number;
    /**
     * Names of the params / headers whose value came from an environment variable (not from a
     * default): possibly secrets, so the engine masks them wherever it records or prints a URL or error.
     */
    env_params: string[];
    env_headers: string[];
  };
  auth: Auth;
  records: {
    path: string;
    primary_key: string;
    event_time?: string;
    updated_at?: string;
    event_type?: string;
    event_type_field?: string;
  };
  pagination: Pagination;
  incremental: Incremental;
  etag: boolean;
  poll_interval_header?: string;
  rate_limit?: { per_second: number; burst: number; bucket: string };
  retry: { max_attempts: number; deadline_ms: number };
  schedule: { every_ms: number; jitter_ms: number };
  max_pages?: number;
}

export class DefinitionError extends Error {
  constructor(file: string, field: string, problem: string) {
    super(`${file}: ${field}: ${problem}`);
    this.name = 'DefinitionError';
  }
}

type Obj = Record<string, unknown>;
const NAME = /^[a-z0-9][a-z0-9._-]{0,99}$/;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
/** RFC 9110 token: what a header name may be made of. */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Reads fields of one object and fails naming the file and the dotted field. */
class Reader {
  constructor(
    readonly file: string,
    readonly at: string,
    readonly obj: Obj,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  field(key: string): string {
    return this.at ? `${this.at}.${key}` : key;
  }

  fail(key: string, problem: string): never {
    throw new DefinitionError(this.file, this.field(key), problem);
  }

  /** Only the listed keys may appear, so a typo is an error rather than a silently ignored setting. */
  only(keys: string[]): void {
    for (const key of Object.keys(this.obj)) {
      if (!keys.includes(key)) this.fail(key, `unknown field (expected one of: ${keys.join(', ')})`);
    }
  }

  str(key: string, fallback?: string): string {
    const value = this.obj[key];
    if (value === undefined || value === null) {
      if (fallback !== undefined) return fallback;
      return this.fail(key, 'is required');
    }
    if (typeof value !== 'string' || value === '') this.fail(key, 'must be a non-empty string');
    return value;
  }

  optStr(key: string): string | undefined {
    return this.obj[key] === undefined ? undefined : this.str(key);
  }

  /**
   * The name of an environment variable. The value is never quoted in the error: someone who pasted
   * the secret itself here would otherwise find it in logs.
   */
  envName(key: string): string {
    const value = this.str(key);
    if (!ENV_NAME.test(value)) {
      this.fail(
        key,
        'must be the name of an environment variable (letters, digits, _; not starting with a digit), not its value',
      );
    }
    return value;
  }

  /** An HTTP header name (a token), checked here rather than failing at run time. */
  headerName(key: string, name: string): void {
    if (!HEADER_NAME.test(name)) this.fail(key, `${JSON.stringify(name)} is not a valid HTTP header name`);
  }

  /** A string in which ${VAR} and ${VAR:-default} are replaced from the environment. */
  expanded(key: string, fallback?: string): string {
    return expand(this.str(key, fallback), this.env, (problem) => this.fail(key, problem));
  }

  int(key: string, fallback: number | undefined, min: number): number {
    const value = this.obj[key];
    if (value === undefined && fallback !== undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min) {
      return this.fail(key, `must be an integer >= ${min}${value === undefined ? ' (required)' : ''}`);
    }
    return value;
  }

  positive(key: string): number {
    const value = this.obj[key];
    if (typeof value !== 'number' || !(value > 0)) return this.fail(key, 'must be a number > 0');
    return value;
  }

  bool(key: string, fallback: boolean): boolean {
    const value = this.obj[key];
    if (value === undefined) return fallback;
    if (typeof value !== 'boolean') this.fail(key, 'must be true or false');
    return value;
  }

  duration(key: string, fallback: string): number {
    const raw = this.obj[key] ?? fallback;
    const match = typeof raw === 'string' ? DURATION.exec(raw) : null;
    if (!match) return this.fail(key, `must be a duration such as 500ms, 30s, 5m, 1h (got ${JSON.stringify(raw)})`);
    return Number(match[1]) * UNIT_MS[match[2]!]!;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback?: T): T {
    const value = this.obj[key] ?? fallback;
    if (typeof value !== 'string' || !allowed.includes(value as T)) {
      return this.fail(key, `must be one of ${allowed.join(', ')}${value === undefined ? ' (required)' : ''}`);
    }
    return value as T;
  }

  child(key: string, required: boolean): Reader {
    const value = this.obj[key];
    if (value === undefined && !required) return new Reader(this.file, this.field(key), {}, this.env);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) this.fail(key, 'must be a mapping');
    return new Reader(this.file, this.field(key), value as Obj, this.env);
  }

  /** A flat map of scalars, values expanded and turned into strings; `fromEnv` gets the names set from the environment. */
  map(key: string, fromEnv: string[] = []): Record<string, string> {
    const sub = this.child(key, false);
    const out: Record<string, string> = {};
    for (const [name, value] of Object.entries(sub.obj)) {
      if (key === 'headers') this.child(key, false).headerName(name, name);
      if (typeof value === 'number' || typeof value === 'boolean') out[name] = String(value);
      else if (typeof value === 'string') {
        out[name] = sub.expanded(name);
        if (usesEnv(value, this.env)) fromEnv.push(name);
      } else sub.fail(name, 'must be a string, number or boolean');
    }
    return out;
  }
}

const REFERENCE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/** True when `text` takes part of its value from a set environment variable (not from a default). */
function usesEnv(text: string, env: NodeJS.ProcessEnv): boolean {
  return [...text.matchAll(REFERENCE)].some((match) => env[match[1]!] !== undefined && env[match[1]!] !== '');
}

function expand(text: string, env: NodeJS.ProcessEnv, fail: (problem: string) => never): string {
  return text.replace(REFERENCE, (_all, name: string, fallback?: string) => {
    const value = env[name];
    if (value !== undefined && value !== '') return value;
    if (fallback !== undefined) return fallback;
    return fail(`environment variable ${name} is not set (write \${${name}:-default} to give a default)`);
  });
}

function readAuth(r: Reader): Auth {
  const type = r.oneOf('type', ['none', 'bearer', 'api_key', 'oauth2_client_credentials'] as const, 'none');
  switch (type) {
    case 'none':
      r.only(['type']);
      return { type };
    case 'bearer':
      r.only(['type', 'token_env', 'optional']);
      return { type, token_env: r.envName('token_env'), optional: r.bool('optional', false) };
    case 'api_key': {
      r.only(['type', 'key_env', 'header', 'query_param']);
      const header = r.optStr('header');
      const query_param = r.optStr('query_param');
      if (!header === !query_param) r.fail('header', 'give exactly one of header or query_param');
      if (header) r.headerName('header', header);
      return { type, key_env: r.envName('key_env'), header, query_param };
    }
    case 'oauth2_client_credentials':
      r.only(['type', 'token_url', 'client_id_env', 'client_secret_env', 'scope']);
      return {
        type,
        token_url: r.expanded('token_url'),
        client_id_env: r.envName('client_id_env'),
        client_secret_env: r.envName('client_secret_env'),
        scope: r.optStr('scope'),
      };
  }
}

function readPagination(r: Reader): Pagination {
  const type = r.oneOf('type', ['none', 'cursor', 'offset', 'page', 'link', 'keyset', 'after_last'] as const);
  switch (type) {
    case 'none':
    case 'link':
      r.only(['type']);
      return { type };
    case 'cursor':
      r.only(['type', 'cursor_path', 'cursor_param']);
      return { type, cursor_path: r.str('cursor_path'), cursor_param: r.str('cursor_param') };
    case 'offset':
      r.only(['type', 'offset_param', 'limit_param', 'limit']);
      return {
        type,
        offset_param: r.str('offset_param', 'offset'),
        limit_param: r.str('limit_param', 'limit'),
        limit: r.int('limit', 100, 1),
      };
    case 'page':
      r.only(['type', 'page_param', 'size_param', 'size', 'start']);
      return {
        type,
        page_param: r.str('page_param', 'page'),
        size_param: r.optStr('size_param'),
        size: r.int('size', 100, 1),
        start: r.int('start', 1, 0),
      };
    case 'keyset':
      r.only(['type', 'param', 'field', 'limit_param', 'limit']);
      return {
        type,
        param: r.str('param'),
        field: r.str('field'),
        limit_param: r.optStr('limit_param'),
        limit: r.obj.limit === undefined ? undefined : r.int('limit', undefined, 1),
      };
    case 'after_last':
      r.only(['type', 'param', 'field', 'has_more_path']);
      return {
        type,
        param: r.str('param', 'starting_after'),
        field: r.str('field', 'id'),
        has_more_path: r.str('has_more_path', 'has_more'),
      };
  }
}

function readIncremental(r: Reader, pagination: Pagination): Incremental {
  const type = r.oneOf('type', ['none', 'cursor', 'watermark', 'newest_first'] as const, 'none');
  switch (type) {
    case 'none':
      r.only(['type']);
      return { type };
    case 'cursor':
      r.only(['type']);
      if (pagination.type !== 'cursor' && pagination.type !== 'keyset') {
        r.fail('type', `"cursor" needs pagination.type cursor or keyset, not ${pagination.type}`);
      }
      return { type };
    case 'watermark':
      r.only(['type', 'param', 'lookback', 'format']);
      return {
        type,
        param: r.str('param'),
        lookback_ms: r.duration('lookback', '0s'),
        format: r.oneOf('format', ['iso', 'epoch_s'] as const, 'iso'),
      };
    case 'newest_first':
      r.only(['type', 'field']);
      return { type, field: r.str('field') };
  }
}

/** Validates a parsed definition; `file` is only used in error messages. */
export function parseDefinition(raw: unknown, file: string, env: NodeJS.ProcessEnv = process.env): SourceDefinition {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new DefinitionError(file, '(root)', 'must be a mapping of fields');
  }
  const r = new Reader(file, '', raw as Obj, env);
  r.only([
    'name',
    'description',
    'request',
    'auth',
    'records',
    'pagination',
    'incremental',
    'etag',
    'poll_interval_header',
    'rate_limit',
    'retry',
    'schedule',
    'max_pages',
  ]);
  const name = r.str('name');
  if (!NAME.test(name)) r.fail('name', 'use lower-case letters, digits, ".", "_" and "-" (max 100)');

  const req = r.child('request', true);
  req.only(['base_url', 'path', 'method', 'params', 'headers', 'body', 'timeout']);
  const baseUrl = req.expanded('base_url');
  try {
    const parsed = new URL(baseUrl);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    // user:password@ in the URL is not repeated into the error.
    req.fail('base_url', `must be an absolute http(s) URL (got "${baseUrl.replace(/\/\/[^/?#]*@/, '//***@')}")`);
  }
  const method = req.oneOf('method', ['GET', 'POST'] as const, 'GET');
  const envParams: string[] = [];
  const envHeaders: string[] = [];

  const rec = r.child('records', true);
  rec.only(['path', 'primary_key', 'event_time', 'updated_at', 'event_type', 'event_type_field']);
  const records = {
    path: typeof rec.obj.path === 'string' ? rec.obj.path : rec.str('path'),
    primary_key: rec.str('primary_key'),
    event_time: rec.optStr('event_time'),
    updated_at: rec.optStr('updated_at'),
    event_type: rec.optStr('event_type'),
    event_type_field: rec.optStr('event_type_field'),
  };
  if (!records.event_type === !records.event_type_field) {
    rec.fail('event_type', 'give exactly one of event_type (a fixed name) or event_type_field');
  }

  const pagination = readPagination(r.child('pagination', true));
  const incremental = readIncremental(r.child('incremental', false), pagination);
  if (incremental.type === 'watermark' && !records.updated_at) {
    r.fail('records.updated_at', 'is required by incremental.type watermark');
  }

  const pollHeader = r.optStr('poll_interval_header');
  if (pollHeader) r.headerName('poll_interval_header', pollHeader);

  let rateLimit: SourceDefinition['rate_limit'];
  if (r.obj.rate_limit !== undefined) {
    const rl = r.child('rate_limit', true);
    rl.only(['per_second', 'burst', 'bucket']);
    const perSecond = rl.positive('per_second');
    rateLimit = {
      per_second: perSecond,
      burst: rl.int('burst', Math.max(1, Math.ceil(perSecond)), 1),
      bucket: rl.str('bucket', name),
    };
  }
  const retry = r.child('retry', false);
  retry.only(['max_attempts', 'deadline']);
  const schedule = r.child('schedule', false);
  schedule.only(['every', 'jitter']);

  return {
    name,
    file,
    description: r.optStr('description'),
    request: {
      base_url: baseUrl.replace(/\/+$/, ''),
      path: req.expanded('path', ''),
      method,
      params: req.map('params', envParams),
      headers: req.map('headers', envHeaders),
      body: req.obj.body === undefined ? undefined : req.expanded('body'),
      timeout_ms: req.duration('timeout', '30s') || req.fail('timeout', 'must be longer than 0'),
      env_params: envParams,
      env_headers: envHeaders,
    },
    auth: readAuth(r.child('auth', false)),
    records,
    pagination,
    incremental,
    etag: r.bool('etag', false),
    poll_interval_header: pollHeader,
    rate_limit: rateLimit,
    retry: { max_attempts: retry.int('max_attempts', 8, 1), deadline_ms: retry.duration('deadline', '5m') },
    schedule: { every_ms: schedule.duration('every', '5m'), jitter_ms: schedule.duration('jitter', '0s') },
    max_pages: r.obj.max_pages === undefined ? undefined : r.int('max_pages', undefined, 1),
  };
}

export async function loadDefinitionFile(
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<SourceDefinition> {
  const text = await readFile(file, 'utf8');
  let raw: unknown;
  try {
    raw = file.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    throw new DefinitionError(
      file,
      '(file)',
      `not valid ${file.endsWith('.json') ? 'JSON' : 'YAML'}: ${(error as Error).message}`,
    );
  }
  return parseDefinition(raw, file, env);
}

export const BUILT_IN_DIR = projectPath('services', 'puller', 'sources');

/** Built-ins plus every *.yaml / *.yml / *.json in the user's folders. A name may be defined once. */
export async function loadDefinitions(
  dirs: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<Map<string, SourceDefinition>> {
  const found = new Map<string, SourceDefinition>();
  for (const dir of [BUILT_IN_DIR, ...dirs]) {
    const entries = await readdir(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT' && dir !== BUILT_IN_DIR) return [];
      throw error;
    });
    for (const entry of entries.sort()) {
      if (!/\.(ya?ml|json)$/.test(entry)) continue;
      const definition = await loadDefinitionFile(path.join(dir, entry), env);
      const earlier = found.get(definition.name);
      if (earlier)
        throw new DefinitionError(
          definition.file,
          'name',
          `"${definition.name}" is already defined in ${earlier.file}`,
        );
      found.set(definition.name, definition);
    }
  }
  return found;
}
