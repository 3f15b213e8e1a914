import { createHash, randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';

/**
 * A realistic REST API to pull from, in-process or standalone (`node --import tsx infra/simulator/index.ts`):
 * every pagination style, a server-side rate limit, 429 storms with Retry-After, 503 bursts, slow
 * answers, malformed pages, records inserted and updated while a client pages, and late updates.
 * Faults are switched on and off at run time through `sim.faults` (or POST /_control/faults).
 */

export interface SimItem {
  id: number;
  name: string;
  value: number;
  created_at: string;
  updated_at: string;
  /** Position in the change feed: bumped on every insert and update. */
  version: number;
}

export interface GitHubEvent {
  id: string;
  type: string;
  created_at: string;
  actor: { login: string };
  repo: { name: string };
}

/** A Stripe-style event (GET /v1/events): one per item insert or update, kept for good. */
export interface StripeEvent {
  id: string;
  object: 'event';
  type: 'item.created' | 'item.updated';
  /** Epoch seconds. */
  created: number;
  data: { object: Omit<SimItem, 'version'> };
}

export interface Faults {
  /** The next N API requests answer 429 with Retry-After: retryAfterS. */
  storm?: { requests: number; retryAfterS: number; httpDate?: boolean };
  /** The next N API requests answer 503. */
  burst503?: number;
  /** Delay before every answer. */
  slowMs?: number;
  /** The next N list pages are not JSON. */
  malformed?: number;
  /** After every list page served: insert and update this many items. */
  mutatePerPage?: { inserts: number; updates: number };
  /** The next list page carries one record without id and one with an unparseable updated_at. */
  badRecords?: boolean;
  /** Server-side token bucket; over it, 429 with Retry-After. */
  rateLimit?: { perSecond: number; burst: number };
  /** Fixed-window quota announced in X-RateLimit-Remaining / X-RateLimit-Reset. */
  quota?: { limit: number; windowMs: number };
  /** Bearer token the API requires. */
  token?: string;
  /**
   * OAuth2 client credentials: the API requires a bearer token from POST /oauth/token (form
   * grant_type=client_credentials, client_id, client_secret) that has not expired.
   */
  oauth?: { clientId: string; clientSecret: string; expiresInS: number };
  /** GitHub X-Poll-Interval in seconds. */
  pollIntervalS?: number;
}

export interface SimStats {
  requests: number;
  byStatus: Record<number, number>;
  /** ms timestamps of every API request, in arrival order. */
  times: number[];
  exportsCreated: number;
  /** Access tokens handed out by /oauth/token. */
  tokensIssued: number;
  /** Every item version served in a list answer: `${id}@${updated_at}`. */
  served: Set<string>;
}

export interface Simulator {
  url: string;
  port: number;
  faults: Faults;
  stats: SimStats;
  items: Map<number, SimItem>;
  events: GitHubEvent[];
  /** Oldest first. */
  stripeEvents: StripeEvent[];
  insert(count: number): SimItem[];
  update(ids: number[]): SimItem[];
  /** An update that reaches the API late: its updated_at is `at`, in the past. */
  lateUpdate(id: number, at: Date): SimItem;
  addEvents(count: number): GitHubEvent[];
  /** Revokes every OAuth2 token handed out, before its expires_in (as a provider may on rotation). */
  revokeTokens(): void;
  resetStats(): void;
  close(): Promise<void>;
}

export interface SimulatorOptions {
  port?: number;
  items?: number;
  events?: number;
  faults?: Faults;
  /**
   * A fixed clock: the first record is stamped at this time and each later one a second after the
   * previous, so two simulators started with the same options serve identical records (the demo's
   * second run finds nothing new). Without it, records are stamped with the wall clock.
   */
  clockStart?: Date;
}

/**
 * A pull source definition (raw, before parseDefinition) for the simulator's change feed:
 * GET /api/changes paged by next_cursor, the cursor as checkpoint, newer-wins by updated_at.
 */
export function changeFeedSource(baseUrl: string, name: string, pageSize: number): Record<string, unknown> {
  return {
    name,
    request: { base_url: baseUrl, path: '/api/changes', params: { limit: pageSize } },
    records: {
      path: 'data',
      primary_key: 'id',
      event_time: 'created_at',
      updated_at: 'updated_at',
      event_type: 'item.changed',
    },
    pagination: { type: 'cursor', cursor_path: 'next_cursor', cursor_param: 'cursor' },
    incremental: { type: 'cursor' },
  };
}

const API_PREFIXES = ['/api/', '/events', '/repos/', '/v1/'];

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const items = new Map<number, SimItem>();
  const events: GitHubEvent[] = [];
  const stripeEvents: StripeEvent[] = [];
  const faults: Faults = { ...options.faults };
  const stats: SimStats = {
    requests: 0,
    byStatus: {},
    times: [],
    exportsCreated: 0,
    tokensIssued: 0,
    served: new Set(),
  };
  /** Issued OAuth2 access tokens and when each expires (ms). */
  const tokens = new Map<string, number>();
  let version = 0;
  let lastTime = options.clockStart ? options.clockStart.getTime() - 1000 : Date.now() - 86_400_000;
  let nextId = 1;
  let nextEventId = 1_000_000_000;
  let bucket = { tokens: 0, at: Date.now(), filled: false };
  let window = { start: Date.now(), used: 0 };

  // Strictly increasing times, so two versions of one item never share an updated_at.
  const tick = () => {
    lastTime = options.clockStart ? lastTime + 1000 : Math.max(Date.now(), lastTime + 1);
    return new Date(lastTime).toISOString();
  };
  const logChange = ({ version: v, ...item }: SimItem) => {
    stripeEvents.push({
      id: `evt_${v}`,
      object: 'event',
      type: item.created_at === item.updated_at ? 'item.created' : 'item.updated',
      created: Math.floor(Date.parse(item.updated_at) / 1000),
      data: { object: { ...item } },
    });
  };

  const sim: Simulator = {
    url: '',
    port: 0,
    faults,
    stats,
    items,
    events,
    stripeEvents,
    insert(count) {
      const made: SimItem[] = [];
      for (let i = 0; i < count; i++) {
        const at = tick();
        const item = {
          id: nextId++,
          name: `item-${nextId}`,
          value: 0,
          created_at: at,
          updated_at: at,
          version: ++version,
        };
        items.set(item.id, item);
        logChange(item);
        made.push(item);
      }
      return made;
    },
    update(ids) {
      return ids.flatMap((id) => {
        const item = items.get(id);
        if (!item) return [];
        item.value += 1;
        item.updated_at = tick();
        item.version = ++version;
        logChange(item);
        return [item];
      });
    },
    lateUpdate(id, at) {
      const item = items.get(id);
      if (!item) throw new Error(`simulator: no item ${id}`);
      item.value += 1;
      item.updated_at = at.toISOString();
      item.version = ++version;
      logChange(item);
      return item;
    },
    addEvents(count) {
      const made: GitHubEvent[] = [];
      for (let i = 0; i < count; i++) {
        const event = {
          id: String(nextEventId++),
          type: i % 3 === 0 ? 'PushEvent' : i % 3 === 1 ? 'WatchEvent' : 'IssuesEvent',
          created_at: tick(),
          actor: { login: `user${i % 17}` },
          repo: { name: `org/repo${i % 5}` },
        };
        events.unshift(event);
        made.push(event);
      }
      return made;
    },
    revokeTokens() {
      tokens.clear();
    },
    resetStats() {
      stats.requests = 0;
      stats.byStatus = {};
      stats.times = [];
      stats.tokensIssued = 0;
      stats.served.clear();
    },
    close: async () => undefined,
  };
  sim.insert(options.items ?? 0);
  sim.addEvents(options.events ?? 0);

  const app = Fastify({ logger: false });

  /** Faults applied to every API request before it is answered; true when the answer was sent. */
  async function gate(request: FastifyRequest, reply: FastifyReply): Promise<boolean> {
    stats.requests++;
    stats.times.push(Date.now());
    if (faults.token && request.headers.authorization !== `Bearer ${faults.token}`) {
      reply.code(401).send({ message: 'Bad credentials' });
      return true;
    }
    if (faults.oauth) {
      const expiresAt = tokens.get(/^Bearer (.+)$/.exec(request.headers.authorization ?? '')?.[1] ?? '');
      if (expiresAt === undefined || expiresAt <= Date.now()) {
        reply.code(401).send({ error: expiresAt === undefined ? 'invalid_token' : 'token_expired' });
        return true;
      }
    }
    // Credentials are checked on arrival, as real servers do; the slowness is in producing the answer.
    if (faults.slowMs) await new Promise((resolve) => setTimeout(resolve, faults.slowMs));
    if (faults.storm && faults.storm.requests > 0) {
      faults.storm.requests--;
      const retryAfter = faults.storm.httpDate
        ? new Date(Date.now() + faults.storm.retryAfterS * 1000).toUTCString()
        : String(faults.storm.retryAfterS);
      reply.code(429).header('retry-after', retryAfter).send({ message: 'rate limited (storm)' });
      return true;
    }
    if (faults.burst503 && faults.burst503 > 0) {
      faults.burst503--;
      reply.code(503).send({ message: 'service unavailable (burst)' });
      return true;
    }
    if (faults.rateLimit) {
      const { perSecond, burst } = faults.rateLimit;
      const now = Date.now();
      if (!bucket.filled) bucket = { tokens: burst, at: now, filled: true };
      bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
      bucket.at = now;
      if (bucket.tokens < 1) {
        const seconds = Math.max(1, Math.ceil((1 - bucket.tokens) / perSecond));
        reply.code(429).header('retry-after', String(seconds)).send({ message: 'rate limited' });
        return true;
      }
      bucket.tokens -= 1;
    }
    if (faults.quota) {
      const now = Date.now();
      if (now - window.start >= faults.quota.windowMs) window = { start: now, used: 0 };
      const reset = String(Math.ceil((window.start + faults.quota.windowMs) / 1000));
      reply.header('x-ratelimit-limit', String(faults.quota.limit)).header('x-ratelimit-reset', reset);
      if (window.used >= faults.quota.limit) {
        reply.code(429).header('x-ratelimit-remaining', '0').send({ message: 'quota exhausted' });
        return true;
      }
      window.used++;
      reply.header('x-ratelimit-remaining', String(faults.quota.limit - window.used));
    }
    return false;
  }

  app.addHook('onSend', async (request, reply, payload) => {
    if (API_PREFIXES.some((p) => request.url.startsWith(p))) {
      stats.byStatus[reply.statusCode] = (stats.byStatus[reply.statusCode] ?? 0) + 1;
    }
    return payload;
  });

  /** Sends a list page, applying the malformed / bad-record faults and the mutations during paging. */
  function sendPage(reply: FastifyReply, page: SimItem[], wrap: (records: unknown[]) => unknown) {
    if (faults.malformed && faults.malformed > 0) {
      faults.malformed--;
      reply.header('content-type', 'application/json').send('{"data": [ {"id": 1, "trunc');
      return;
    }
    const records: unknown[] = page.map(({ version: _v, ...rest }) => rest);
    for (const item of page) stats.served.add(`${item.id}@${item.updated_at}`);
    if (faults.badRecords) {
      faults.badRecords = false;
      // The same bad records every time they are served, as a real API serves a page read again.
      records.push({
        name: 'no id here',
        updated_at: '2026-01-01T00:00:00.000Z',
        created_at: '2026-01-01T00:00:00.000Z',
      });
      records.push({ id: 999_999, name: 'bad time', updated_at: 'yesterday-ish', created_at: 'never' });
    }
    reply.send(wrap(records));
    if (faults.mutatePerPage) {
      const { inserts, updates } = faults.mutatePerPage;
      sim.insert(inserts);
      const ids = [...items.keys()];
      sim.update(Array.from({ length: updates }, () => ids[Math.floor(Math.random() * ids.length)]!));
    }
  }

  const num = (value: unknown, fallback: number) => {
    const n = Number(value);
    return Number.isFinite(n) && n >= 0 ? n : fallback;
  };
  const sortedByUpdate = (after?: string) =>
    [...items.values()]
      .filter((i) => !after || i.updated_at > after)
      .sort((a, b) => (a.updated_at < b.updated_at ? -1 : a.updated_at > b.updated_at ? 1 : a.id - b.id));

  type Q = Record<string, string | undefined>;

  // Change feed, cursor pagination: ascending by version; the cursor is opaque to clients.
  app.get('/api/changes', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const limit = Math.min(1000, num(q.limit, 100)) || 100;
    let after = 0;
    if (q.cursor) {
      const decoded = /^v:(\d+)$/.exec(Buffer.from(q.cursor, 'base64url').toString());
      if (!decoded) return reply.code(400).send({ message: `invalid cursor ${q.cursor}` });
      after = Number(decoded[1]);
    }
    const page = [...items.values()]
      .filter((i) => i.version > after)
      .sort((a, b) => a.version - b.version)
      .slice(0, limit);
    const last = page.at(-1);
    const nextCursor = page.length === limit && last ? Buffer.from(`v:${last.version}`).toString('base64url') : null;
    sendPage(reply, page, (data) => ({ data, next_cursor: nextCursor }));
    return reply;
  });

  // Offset pagination, optionally filtered by updated_after.
  app.get('/api/items', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const limit = num(q.limit, 100) || 100;
    const offset = num(q.offset, 0);
    const all = sortedByUpdate(q.updated_after);
    sendPage(reply, all.slice(offset, offset + limit), (list) => ({ items: list, total: all.length }));
    return reply;
  });

  // Page-number pagination.
  app.get('/api/pages', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const size = num(q.per_page, 50) || 50;
    const pageNo = Math.max(1, num(q.page, 1));
    const all = sortedByUpdate(q.updated_after);
    sendPage(reply, all.slice((pageNo - 1) * size, pageNo * size), (results) => ({ results, page: pageNo }));
    return reply;
  });

  // RFC 8288 Link header pagination; the body is a bare array.
  app.get('/api/linked', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const size = num(q.per_page, 50) || 50;
    const pageNo = Math.max(1, num(q.page, 1));
    const all = sortedByUpdate(q.updated_after);
    if (pageNo * size < all.length) {
      const next = new URL(`${sim.url}/api/linked`);
      for (const [k, v] of Object.entries(q)) if (v !== undefined) next.searchParams.set(k, v);
      next.searchParams.set('page', String(pageNo + 1));
      reply.header('link', `<${next.toString()}>; rel="next"`);
    }
    sendPage(reply, all.slice((pageNo - 1) * size, pageNo * size), (list) => list);
    return reply;
  });

  // Keyset pagination: ascending id after since_id.
  app.get('/api/keyset', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const limit = num(q.limit, 100) || 100;
    const since = num(q.since_id, 0);
    const page = [...items.values()]
      .filter((i) => i.id > since)
      .sort((a, b) => a.id - b.id)
      .slice(0, limit);
    sendPage(reply, page, (list) => list);
    return reply;
  });

  // A non-idempotent call: every POST creates a new export job.
  app.post('/api/exports', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    stats.exportsCreated++;
    return reply.code(201).send({ id: `export-${stats.exportsCreated}` });
  });

  // GitHub-style events: newest first, Link pagination, ETag / If-None-Match, X-Poll-Interval.
  const githubEvents = async (request: FastifyRequest, reply: FastifyReply, list: GitHubEvent[]) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const size = Math.min(100, num(q.per_page, 30) || 30);
    const pageNo = Math.max(1, num(q.page, 1));
    const etag = `W/"${createHash('sha1')
      .update(list[0]?.id ?? 'none')
      .digest('hex')}"`;
    reply.header('etag', etag).header('x-poll-interval', String(faults.pollIntervalS ?? 60));
    if (pageNo === 1 && request.headers['if-none-match'] === etag) return reply.code(304).send();
    // GitHub serves at most 300 events (10 pages of 30).
    const visible = list.slice(0, 300);
    if (pageNo * size < visible.length) {
      const next = new URL(`${sim.url}${request.url.split('?')[0]}`);
      next.searchParams.set('per_page', String(size));
      next.searchParams.set('page', String(pageNo + 1));
      reply.header('link', `<${next.toString()}>; rel="next", <${next.toString()}>; rel="last"`);
    }
    return reply.send(visible.slice((pageNo - 1) * size, pageNo * size));
  };
  app.get('/events', (request, reply) => githubEvents(request, reply, events));
  app.get('/repos/:owner/:repo/events', (request, reply) => {
    const { owner, repo } = request.params as { owner: string; repo: string };
    return githubEvents(
      request,
      reply,
      events.filter((e) => e.repo.name === `${owner}/${repo}`),
    );
  });

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_request, body, done) =>
    done(null, Object.fromEntries(new URLSearchParams(String(body)))),
  );
  // OAuth2 token endpoint (RFC 6749 section 4.4): client credentials in the form body.
  // Stripe-style list (https://docs.stripe.com/api/events/list): newest first, `limit` 1-100 (default
  // 10), `starting_after` an event id, `created[gte]` epoch seconds, `has_more` in the body.
  app.get('/v1/events', async (request, reply) => {
    if (await gate(request, reply)) return reply;
    const q = request.query as Q;
    const limit = q.limit === undefined ? 10 : Number(q.limit);
    const invalid = (param: string, message: string) =>
      reply.code(400).send({ error: { type: 'invalid_request_error', param, message } });
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
      return invalid('limit', 'This value must be between 1 and 100.');
    }
    const since = q['created[gte]'] === undefined ? 0 : Number(q['created[gte]']);
    if (!Number.isInteger(since)) return invalid('created[gte]', 'Invalid integer.');
    const newestFirst = stripeEvents
      .filter((e) => e.created >= since)
      .sort((a, b) => b.created - a.created || Number(b.id.slice(4)) - Number(a.id.slice(4)));
    let from = 0;
    if (q.starting_after) {
      from = newestFirst.findIndex((e) => e.id === q.starting_after) + 1;
      if (from === 0) {
        return reply.code(404).send({
          error: { type: 'invalid_request_error', code: 'resource_missing', param: 'starting_after' },
        });
      }
    }
    const data = newestFirst.slice(from, from + limit);
    for (const e of data) stats.served.add(`${e.data.object.id}@${e.data.object.updated_at}`);
    return reply.send({ object: 'list', url: '/v1/events', has_more: from + limit < newestFirst.length, data });
  });

  app.post('/oauth/token', async (request, reply) => {
    const form = (request.body ?? {}) as Q;
    const oauth = faults.oauth;
    if (form.grant_type !== 'client_credentials') return reply.code(400).send({ error: 'unsupported_grant_type' });
    if (!oauth || form.client_id !== oauth.clientId || form.client_secret !== oauth.clientSecret) {
      return reply.code(401).send({ error: 'invalid_client', error_description: 'client authentication failed' });
    }
    const token = randomBytes(16).toString('hex');
    tokens.set(token, Date.now() + oauth.expiresInS * 1000);
    stats.tokensIssued++;
    return reply.send({ access_token: token, token_type: 'Bearer', expires_in: oauth.expiresInS });
  });

  app.post('/_control/faults', async (request) => {
    Object.assign(faults, request.body as Faults);
    return faults;
  });
  app.post(
    '/_control/insert',
    async (request) => sim.insert(num((request.body as { count?: number })?.count, 1)).length,
  );

  await app.listen({ port: options.port ?? 0, host: '127.0.0.1' });
  const address = app.server.address();
  sim.port = typeof address === 'object' && address ? address.port : 0;
  sim.url = `http://127.0.0.1:${sim.port}`;
  sim.close = () => app.close();
  return sim;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const sim = await startSimulator({
    port: Number(process.env.SIMULATOR_PORT ?? 4010),
    items: Number(process.env.SIMULATOR_ITEMS ?? 1000),
    events: Number(process.env.SIMULATOR_EVENTS ?? 200),
  });
  process.stdout.write(`simulator listening on ${sim.url}\n`);
}
