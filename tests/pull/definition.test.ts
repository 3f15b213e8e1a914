import { describe, expect, it } from 'vitest';
import { parseTime } from '../../libs/outbox/index.ts';
import { BUILT_IN_DIR, loadDefinitions, parseDefinition } from '../../services/puller/definition.ts';
import { nextLink } from '../../services/puller/engine.ts';

const valid = {
  name: 'orders',
  request: { base_url: '${ORDERS_URL:-http://127.0.0.1:1}', path: '/orders', params: { limit: 10 } },
  records: { path: 'data', primary_key: 'id', updated_at: 'updated_at', event_type: 'order' },
  pagination: { type: 'offset', limit: 10 },
  incremental: { type: 'watermark', param: 'updated_after', lookback: '5m' },
};

describe('source definitions (pure)', () => {
  it('loads a valid definition with defaults and ${VAR:-default} expansion', () => {
    const def = parseDefinition(valid, 'orders.yaml', {});
    expect(def.request.base_url).toBe('http://127.0.0.1:1');
    expect(def.request.params).toEqual({ limit: '10' });
    expect(def.incremental).toEqual({ type: 'watermark', param: 'updated_after', lookback_ms: 300_000, format: 'iso' });
    expect(def.retry).toEqual({ max_attempts: 8, deadline_ms: 300_000 });
    expect(parseDefinition(valid, 'orders.yaml', { ORDERS_URL: 'https://api.example.com/' }).request.base_url).toBe(
      'https://api.example.com',
    );
  });

  it.each([
    [{ ...valid, pagnation: {} }, 'orders.yaml: pagnation: unknown field'],
    [{ ...valid, name: 'Bad Name' }, 'orders.yaml: name: use lower-case letters'],
    [{ ...valid, request: { path: '/x' } }, 'orders.yaml: request.base_url: is required'],
    [
      { ...valid, request: { base_url: '${NOPE}' } },
      'orders.yaml: request.base_url: environment variable NOPE is not set',
    ],
    [
      { ...valid, pagination: { type: 'scroll' } },
      'orders.yaml: pagination.type: must be one of none, cursor, offset, page, link, keyset',
    ],
    [
      { ...valid, pagination: { type: 'cursor', cursor_path: 'next' } },
      'orders.yaml: pagination.cursor_param: is required',
    ],
    [
      { ...valid, incremental: { type: 'cursor' } },
      'orders.yaml: incremental.type: "cursor" needs pagination.type cursor or keyset',
    ],
    [
      { ...valid, incremental: { ...valid.incremental, lookback: 'soon' } },
      'orders.yaml: incremental.lookback: must be a duration',
    ],
    [
      { ...valid, records: { ...valid.records, event_type: undefined } },
      'orders.yaml: records.event_type: give exactly one',
    ],
    [
      { ...valid, auth: { type: 'api_key', key_env: 'K' } },
      'orders.yaml: auth.header: give exactly one of header or query_param',
    ],
    [{ ...valid, rate_limit: { per_second: 0 } }, 'orders.yaml: rate_limit.per_second: must be a number > 0'],
  ])('refuses %j naming file and field', (raw, message) => {
    expect(() => parseDefinition(raw, 'orders.yaml', {})).toThrow(message);
  });

  it.each([
    [{ request: { base_url: 'http://h', timeout: '0s' } }, 'orders.yaml: request.timeout: must be longer than 0'],
    [
      { request: { base_url: 'http://h', headers: { 'x api key': 'v' } } },
      'orders.yaml: request.headers.x api key: "x api key" is not a valid HTTP header name',
    ],
    [
      { auth: { type: 'api_key', key_env: 'K', header: 'X-Key:' } },
      'orders.yaml: auth.header: "X-Key:" is not a valid HTTP header name',
    ],
    [{ poll_interval_header: 'X Poll' }, 'orders.yaml: poll_interval_header: "X Poll" is not a valid HTTP header name'],
  ])('refuses what would only fail at run time: %j', (overrides, message) => {
    expect(() => parseDefinition({ ...valid, ...overrides }, 'orders.yaml', {})).toThrow(message);
  });

  it.each([
    { type: 'bearer', token_env: 'sk_live_PASTED-SECRET-1' },
    { type: 'api_key', key_env: 'sk_live_PASTED-SECRET-1', header: 'X-Key' },
    {
      type: 'oauth2_client_credentials',
      token_url: 'http://h/t',
      client_id_env: 'ID',
      client_secret_env: 'sk_live_PASTED-SECRET-1',
    },
    { type: 'oauth2_client_credentials', token_url: 'http://h/t', client_id_env: '1 pasted', client_secret_env: 'S' },
  ])('refuses an environment variable name that is not one, without repeating it: %j', (auth) => {
    let message = '';
    try {
      parseDefinition({ ...valid, auth }, 'orders.yaml', {});
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^orders\.yaml: auth\.\w+_env: must be the name of an environment variable/);
    expect(message).not.toContain('PASTED');
    expect(message).not.toContain('pasted');
  });

  it('does not repeat user:password of a base_url it refuses', () => {
    expect(() =>
      parseDefinition({ ...valid, request: { base_url: 'ftp://bob:hunter2@h/x' } }, 'orders.yaml', {}),
    ).toThrow('orders.yaml: request.base_url: must be an absolute http(s) URL (got "ftp://***@h/x")');
  });

  it('loads the built-in sources', async () => {
    const defs = await loadDefinitions([], {});
    expect([...defs.keys()].sort()).toEqual(['generic-cursor-api', 'github-public-events', 'github-repo-events']);
    expect(defs.get('github-public-events')!.file.startsWith(BUILT_IN_DIR)).toBe(true);
  });
});

describe('page helpers (pure)', () => {
  it('follows rel="next" in a Link header, relative or absolute', () => {
    const header =
      '<https://api.github.com/events?page=2>; rel="next", <https://api.github.com/events?page=10>; rel="last"';
    expect(nextLink(header, 'https://api.github.com/events')).toBe('https://api.github.com/events?page=2');
    expect(nextLink('</x?page=3>; rel="prev next"', 'http://h/x?page=2')).toBe('http://h/x?page=3');
    expect(nextLink('<http://h/x?page=1>; rel="prev"', 'http://h/x')).toBeUndefined();
  });
  it.each([
    ['<http://h/x?page=2>; rel="next" , <http://h/x?page=9>; rel="last"', 'http://h/x?page=2'],
    ['<http://h/x?page=9>; rel="last" , <http://h/x?page=2>; rel="next"', 'http://h/x?page=2'],
    ['<http://h/x?page=2>; rel="next"\t', 'http://h/x?page=2'],
    ['<http://h/x?page=2>; rel = "next"', 'http://h/x?page=2'],
    ['<http://h/x?page=2> ; rel=next', 'http://h/x?page=2'],
    ['<http://h/x?page=2>; title="a, b; rel=next"; rel="prev"', undefined],
    ['<http://h/x?page=1>; title="x, y"; rel=prev, <http://h/x?page=3>;REL="Next"', 'http://h/x?page=3'],
    ['<http://h/x?page=1>; rel="next-page"', undefined],
  ])('reads RFC 8288 forms: %s', (header, expected) => {
    expect(nextLink(header, 'http://h/x')).toBe(expected);
  });
  it('parses ISO times and epoch seconds / milliseconds, nothing else', () => {
    expect(parseTime('2025-01-02T03:04:05Z')?.toISOString()).toBe('2025-01-02T03:04:05.000Z');
    expect(parseTime(1_700_000_000)?.toISOString()).toBe('2023-11-14T22:13:20.000Z');
    expect(parseTime(1_700_000_000_000)?.toISOString()).toBe('2023-11-14T22:13:20.000Z');
    expect(parseTime('yesterday')).toBeUndefined();
    expect(parseTime('2025-13-45')).toBeUndefined();
  });
});
