import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import underPressure from '@fastify/under-pressure';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { projectPath } from '../../libs/config/index.ts';
import type { Pool, PoolClient } from '../../libs/db/index.ts';
import { Counter, Histogram, type Logger, type Registry, registerOpsRoutes } from '../../libs/observability/index.ts';
import { type AppendResult, appendEvents, type NewEvent, OutboxInputError } from '../../libs/outbox/index.ts';
import { BadRequestError, decodeUtf8, ingestEventId, parseEventTime, parseJsonObject } from './body.ts';
import type { PayloadContracts } from './contracts.ts';
import { GroupCommitter } from './group-commit.ts';
import { SeenCache } from './seen-cache.ts';
import type { WebhookSource } from './sources.ts';
import { VerificationError, verifySignature } from './verify.ts';

export interface WebhookAppOptions {
  pool: Pool;
  /** The pool's `max`. */
  poolMax: number;
  /** Requests allowed to wait for a connection before the service sheds load with 503. */
  maxWaiting: number;
  sources: Map<string, WebhookSource>;
  contracts: PayloadContracts;
  logger: Logger;
  metrics: Registry;
  bodyLimit: number;
  maxJsonDepth: number;
  batchMaxEvents: number;
  maxFutureMs: number;
  dryRun: boolean;
  /** Stored (source, event_id) pairs remembered to answer replays without a round trip; 0 disables. */
  dedupeCacheSize: number;
}

export const DRY_RUN_HEADER = 'x-conveyor-dry-run';
const INGEST_SCHEMA = JSON.parse(
  fs.readFileSync(projectPath('schemas', 'contracts', 'ingest-event.schema.json'), 'utf8'),
) as Record<string, unknown>;
/** Distinct source label values kept in metrics; /ingest sources come from clients and must not explode them. */
const MAX_SOURCE_LABELS = 200;
/** Most events one group-committed statement carries. */
const GROUP_MAX_EVENTS = 1000;
/**
 * Most group-commit statements in flight at once. Commits that insert outbox rows take turns (the
 * outbox trigger's NOTIFY holds a database-wide lock through each commit's WAL flush), so more
 * concurrent statements only make smaller groups that queue for that lock: at 64 connections, 10
 * statements measured a third of the throughput of 3 to 6. The rest of the pool serves dry runs and /readyz.
 */
const GROUP_STATEMENTS = 4;

/** The database cannot take the request now: answer 503 with Retry-After, nothing was written. */
class UnavailableError extends Error {}

type Status = 'ACCEPTED' | 'DUPLICATE';

interface IngestBody {
  source: string;
  event_type: string;
  entity_id: string;
  event_time: string;
  payload: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifyRequest {
    conveyorSource: string | undefined;
  }
}

/** Outbox field names → the request's own field names, for error paths. */
const FIELD_NAMES: Record<string, string> = {
  source: 'source',
  eventId: 'event_id',
  eventType: 'event_type',
  entityKey: 'entity_id',
  eventTime: 'event_time',
  payload: 'payload',
};

function schemaProblems(error: FastifyError): Array<{ path: string; message: string }> {
  return (error.validation ?? []).map((v) => {
    const params = v.params as { missingProperty?: string; additionalProperty?: string };
    const extra = params.missingProperty ?? params.additionalProperty;
    const message =
      params.additionalProperty === 'event_id'
        ? 'is computed by the server; clients must not send it'
        : params.additionalProperty
          ? 'is not a field of this contract'
          : (v.message ?? 'invalid');
    return { path: `${v.instancePath}${extra ? `/${extra}` : ''}` || '/', message };
  });
}

export async function buildWebhookApp(options: WebhookAppOptions): Promise<FastifyInstance> {
  const { pool, sources, contracts, logger, metrics } = options;
  const app = Fastify({
    loggerInstance: logger as FastifyBaseLogger,
    // One line per answered event instead of Fastify's two per request.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimit,
    genReqId: () => randomUUID(),
    ajv: { customOptions: { allErrors: true, removeAdditional: false, coerceTypes: false, useDefaults: false } },
  });
  app.decorateRequest('conveyorSource', undefined);

  const requests = new Counter({
    name: 'conveyor_webhook_requests_total',
    help: 'Requests to the webhook service by route, source and HTTP status.',
    labelNames: ['route', 'source', 'status'],
    registers: [metrics],
  });
  const duration = new Histogram({
    name: 'conveyor_webhook_request_duration_seconds',
    help: 'Request duration by route and HTTP status.',
    labelNames: ['route', 'status'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [metrics],
  });
  const events = new Counter({
    name: 'conveyor_webhook_events_total',
    help: 'Events answered, by source and outcome (ACCEPTED, DUPLICATE; dry_run="true" when nothing was written).',
    labelNames: ['source', 'status', 'dry_run'],
    registers: [metrics],
  });
  const duplicates = new Counter({
    name: 'conveyor_webhook_duplicates_total',
    help: 'Deliveries or ingests of an event already stored (provider retries, client retries, replays).',
    labelNames: ['source'],
    registers: [metrics],
  });
  const lag = new Histogram({
    name: 'conveyor_ingest_lag_ms',
    help: 'ingest_lag_ms = ingest time - event_time, per source.',
    labelNames: ['source'],
    buckets: [10, 100, 1000, 10_000, 60_000, 600_000, 3_600_000, 86_400_000, 604_800_000],
    registers: [metrics],
  });
  const shed = new Counter({
    name: 'conveyor_webhook_shed_total',
    help: 'Requests answered 503 because the database pool was exhausted or unreachable.',
    registers: [metrics],
  });
  const labelled = new Set<string>();
  const sourceLabel = (source: string | undefined): string => {
    if (source === undefined) return '';
    if (labelled.has(source)) return source;
    if (labelled.size >= MAX_SOURCE_LABELS) return 'other';
    labelled.add(source);
    return source;
  };

  // While closing, each answer ends its keep-alive connection, so close() does not wait for clients to hang up.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });

  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    const status = String(reply.statusCode);
    requests.inc({ route, source: sourceLabel(request.conveyorSource), status });
    duration.observe({ route, status }, reply.elapsedTime / 1000);
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: 'not_found', message: `no route ${request.method} ${request.url}` }),
  );
  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error instanceof BadRequestError) {
      request.log.info({ source: request.conveyorSource, code: error.code }, error.message);
      return reply.code(error.statusCode).send({ error: error.code, message: error.message, problems: error.problems });
    }
    if (error instanceof VerificationError) {
      request.log.warn({ source: request.conveyorSource, check: error.check }, 'signature verification failed');
      return reply.code(401).send({ error: 'signature_invalid', check: error.check, message: error.message });
    }
    if (error instanceof UnavailableError) {
      shed.inc();
      return reply
        .code(503)
        .header('retry-after', '1')
        .send({ error: 'unavailable', message: `${error.message}; nothing was stored, retry later` });
    }
    if (error.validation) {
      return reply.code(400).send({
        error: 'invalid_body',
        message: 'the body breaks the request contract',
        problems: schemaProblems(error),
      });
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const limit = request.routeOptions.bodyLimit ?? options.bodyLimit;
      return reply.code(413).send({ error: 'body_too_large', message: `request body is larger than ${limit} bytes` });
    }
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
      return reply
        .code(415)
        .send({ error: 'unsupported_media_type', message: 'Content-Type must be application/json' });
    }
    if (error.statusCode && error.statusCode >= 400 && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ error: error.code ?? 'bad_request', message: error.message });
    }
    request.log.error({ err: error, source: request.conveyorSource }, 'request failed');
    return reply.code(500).send({ error: 'internal', message: 'internal error; nothing was stored' });
  });

  await app.register(underPressure, { maxEventLoopDelay: 1000, retryAfter: 1 });
  registerOpsRoutes(app, {
    metrics,
    healthy: () => true,
    ready: () =>
      pool.query('SELECT 1').then(
        () => true,
        () => false,
      ),
  });

  /** A connection, or 503 when too many requests already wait for one or the database does not answer. */
  async function connect(): Promise<PoolClient> {
    const exhausted = pool.idleCount === 0 && pool.totalCount >= options.poolMax;
    if (exhausted && pool.waitingCount >= options.maxWaiting) throw new UnavailableError('database pool exhausted');
    try {
      return await pool.connect();
    } catch (error) {
      throw new UnavailableError(`database unavailable (${(error as Error).message})`);
    }
  }

  /**
   * One statement storing events and their outbox rows. appendEvents is a single statement, so
   * autocommit makes it atomic in one round trip instead of BEGIN / append / COMMIT.
   */
  async function append(batch: NewEvent[]): Promise<AppendResult[]> {
    const client = await connect();
    let broken: Error | undefined;
    try {
      return await appendEvents(client, batch);
    } catch (error) {
      // No SQLSTATE: the connection itself failed; it must not go back to the pool.
      if ((error as { code?: string }).code === undefined) broken = error as Error;
      throw error;
    } finally {
      client.release(broken);
    }
  }
  const committer = new GroupCommitter(append, Math.min(options.poolMax, GROUP_STATEMENTS), GROUP_MAX_EVENTS);

  // raw_events refuses UPDATE, DELETE and TRUNCATE, so an event once seen stored stays stored: a hit
  // here can only ever be a true DUPLICATE. A miss just goes to Postgres, the authority.
  const seenStored = new SeenCache(options.dedupeCacheSize);
  const keyOf = (event: NewEvent) => `${event.source}\u0000${event.eventId}`;

  /** Stores a request's events (all or none); resolves only once they are committed. */
  async function store(batch: NewEvent[], pathOf: (index: number) => string): Promise<AppendResult[]> {
    if (!seenStored.empty && batch.every((event) => seenStored.has(keyOf(event)))) {
      return batch.map((event) => ({ eventId: event.eventId, status: 'DUPLICATE' }));
    }
    if (committer.saturated(options.maxWaiting)) throw new UnavailableError('database pool exhausted');
    try {
      const results = await committer.submit(batch);
      for (const event of batch) seenStored.add(keyOf(event));
      return results;
    } catch (error) {
      if (error instanceof OutboxInputError) {
        const field = FIELD_NAMES[error.field] ?? error.field;
        const at = `${pathOf(error.index)}/${field}`;
        throw new BadRequestError(400, 'invalid_body', `${at}: ${error.message.split(': ').slice(1).join(': ')}`, [
          { path: at, message: error.message },
        ]);
      }
      const code = (error as { code?: string }).code;
      // Class 22 is "data exception": a value Postgres cannot store (e.g. a lone surrogate in jsonb).
      if (typeof code === 'string' && code.startsWith('22')) {
        throw new BadRequestError(400, 'unstorable_value', `a value cannot be stored: ${(error as Error).message}`);
      }
      throw error;
    }
  }

  /** Dry run: what storing would answer, found by reading only. */
  async function wouldBe(batch: NewEvent[]): Promise<Status[]> {
    const client = await connect();
    try {
      const { rows } = await client.query<{ source: string; event_id: string }>(
        `SELECT r.source, r.event_id FROM raw_events r
         JOIN unnest($1::text[], $2::text[]) AS t(source, event_id) USING (source, event_id)`,
        [batch.map((e) => e.source), batch.map((e) => e.eventId)],
      );
      const stored = new Set(rows.map((r) => `${r.source}\u0000${r.event_id}`));
      return batch.map((e) => {
        const key = `${e.source}\u0000${e.eventId}`;
        if (stored.has(key)) return 'DUPLICATE';
        stored.add(key);
        return 'ACCEPTED';
      });
    } finally {
      client.release();
    }
  }

  function isDryRun(request: FastifyRequest): boolean {
    const value = request.headers[DRY_RUN_HEADER];
    if (value === undefined) return options.dryRun;
    if (value === 'true') return true;
    if (value === 'false') return false;
    throw new BadRequestError(400, 'invalid_header', `${DRY_RUN_HEADER} must be true or false`);
  }

  /** Stores (or, in a dry run, checks) events and records the metrics; one result per event. */
  async function ingestEvents(request: FastifyRequest, batch: NewEvent[], pathOf: (index: number) => string) {
    const dryRun = isDryRun(request);
    const statuses = dryRun ? await wouldBe(batch) : (await store(batch, pathOf)).map((r) => r.status);
    const now = Date.now();
    // A batch logs one summary line; its per-event lines are debug, or 1,000 events would write 1,000 lines.
    const logEvent = batch.length === 1 || logger.isLevelEnabled('debug');
    // Counters are added once per (source, status) of the request rather than once per event.
    const tally = new Map<string, { source: string; status: Status; n: number }>();
    const results = batch.map((event, index) => {
      const status = statuses[index]!;
      const ingestLagMs = now - event.eventTime.getTime();
      const source = sourceLabel(event.source);
      const key = `${source}\u0000${status}`;
      const count = tally.get(key);
      if (count) count.n++;
      else tally.set(key, { source, status, n: 1 });
      lag.observe({ source }, ingestLagMs);
      if (logEvent) {
        const line = {
          source: event.source,
          event_id: event.eventId,
          entity_id: event.entityKey,
          status,
          dry_run: dryRun,
        };
        if (batch.length === 1) request.log.info(line, 'event answered');
        else request.log.debug(line, 'event answered');
      }
      return {
        event_id: event.eventId,
        status,
        ingest_lag_ms: ingestLagMs,
        source: event.source,
        storage_ref: `raw_events/${event.source}/${event.eventId}`,
        ...(dryRun ? { dry_run: true } : {}),
      };
    });
    for (const { source, status, n } of tally.values()) {
      events.inc({ source, status, dry_run: String(dryRun) }, n);
      if (status === 'DUPLICATE') duplicates.inc({ source }, n);
    }
    if (batch.length > 1) {
      const accepted = results.filter((r) => r.status === 'ACCEPTED').length;
      request.log.info(
        { events: batch.length, accepted, duplicates: batch.length - accepted, dry_run: dryRun },
        'batch answered',
      );
    }
    return results;
  }

  function toIngestEvent(request: FastifyRequest, body: IngestBody, at: string, now: number): NewEvent {
    const eventTime = parseEventTime(body.event_time, `${at}/event_time`, now, options.maxFutureMs);
    contracts.check(body.source, body.event_type, body.payload, `${at}/payload`);
    const eventId = ingestEventId({
      source: body.source,
      event_type: body.event_type,
      entity_id: body.entity_id,
      event_time: eventTime.toISOString(),
      payload: body.payload,
    });
    return {
      source: body.source,
      eventId,
      eventType: body.event_type,
      entityKey: body.entity_id,
      eventTime,
      payload: body.payload,
      lineage: { via: 'ingest', request_id: String(request.id) },
    };
  }

  // /ingest: the body is parsed here (UTF-8, depth, JSON) so Fastify's schema validation sees an object.
  await app.register(async (ingest) => {
    ingest.removeAllContentTypeParsers();
    ingest.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => {
      try {
        done(null, parseJsonObject(decodeUtf8(body as Buffer), options.maxJsonDepth));
      } catch (error) {
        done(error as Error);
      }
    });

    ingest.post<{ Body: IngestBody }>('/ingest', { schema: { body: INGEST_SCHEMA } }, async (request) => {
      request.conveyorSource = request.body.source;
      const event = toIngestEvent(request, request.body, '', Date.now());
      const [result] = await ingestEvents(request, [event], () => '');
      return result;
    });

    ingest.post<{ Body: { events: IngestBody[] } }>(
      '/ingest/batch',
      {
        bodyLimit: options.bodyLimit * 16,
        schema: {
          body: {
            type: 'object',
            required: ['events'],
            additionalProperties: false,
            properties: {
              events: { type: 'array', minItems: 1, maxItems: options.batchMaxEvents, items: INGEST_SCHEMA },
            },
          },
        },
      },
      async (request) => {
        const now = Date.now();
        const problems: Array<{ path: string; message: string }> = [];
        const batch: NewEvent[] = [];
        request.body.events.forEach((body, index) => {
          try {
            batch.push(toIngestEvent(request, body, `/events/${index}`, now));
          } catch (error) {
            if (!(error instanceof BadRequestError)) throw error;
            problems.push(...error.problems);
          }
        });
        if (problems.length > 0) {
          throw new BadRequestError(400, 'invalid_body', 'events break the contract; none was stored', problems);
        }
        const sourcesInBatch = new Set(batch.map((e) => e.source));
        if (sourcesInBatch.size === 1) request.conveyorSource = batch[0]!.source;
        const results = await ingestEvents(request, batch, (i) => `/events/${i}`);
        return {
          results,
          accepted: results.filter((r) => r.status === 'ACCEPTED').length,
          duplicates: results.filter((r) => r.status === 'DUPLICATE').length,
        };
      },
    );
  });

  // /webhooks/:source: the raw bytes reach the handler untouched, because signatures cover them.
  await app.register(async (hooks) => {
    hooks.removeAllContentTypeParsers();
    hooks.addContentTypeParser('application/json', { parseAs: 'buffer' }, (_request, body, done) => done(null, body));

    hooks.post<{ Params: { source: string }; Body: Buffer }>('/webhooks/:source', async (request, reply) => {
      const source = sources.get(request.params.source);
      if (!source) {
        return reply
          .code(404)
          .send({ error: 'unknown_source', message: `no webhook source "${request.params.source}" is configured` });
      }
      request.conveyorSource = source.name;
      const raw = request.body;
      if (!Buffer.isBuffer(raw)) {
        return reply
          .code(415)
          .send({ error: 'unsupported_media_type', message: 'Content-Type must be application/json' });
      }
      // Checked first: the verification libraries sign text, and only valid UTF-8 round-trips to the same bytes.
      const text = decodeUtf8(raw);
      await verifySignature({
        scheme: source.scheme,
        body: raw,
        headers: request.headers,
        secrets: source.secrets,
        hmac: source.hmac,
      });
      const body = parseJsonObject(text, options.maxJsonDepth);
      const event = webhookEvent(source, request, raw, body, options.maxFutureMs);
      contracts.check(source.name, event.eventType, body, '');
      const [result] = await ingestEvents(request, [event], () => '');
      return result;
    });
  });

  return app;
}

function headerValue(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function requiredHeader(request: FastifyRequest, name: string): string {
  const value = headerValue(request, name);
  if (!value) throw new BadRequestError(400, 'missing_header', `missing ${name} header`);
  return value;
}

function requiredString(body: Record<string, unknown>, field: string): string {
  const value = body[field];
  if (typeof value !== 'string' || value === '') {
    throw new BadRequestError(400, 'invalid_body', `/${field} must be a non-empty string`, [
      { path: `/${field}`, message: 'must be a non-empty string' },
    ]);
  }
  return value;
}

function atPath(body: Record<string, unknown>, dotted: string): unknown {
  let value: unknown = body;
  for (const part of dotted.split('.')) {
    if (value === null || typeof value !== 'object') return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

const DEFAULT_ENTITY_PATHS: Record<string, string | undefined> = {
  github: 'repository.full_name',
  stripe: 'data.object.id',
  'standard-webhooks': 'data.id',
  hmac: undefined,
};

/** Id, type, time and key of a verified delivery, as each provider carries them. */
function webhookEvent(
  source: WebhookSource,
  request: FastifyRequest,
  raw: Buffer,
  body: Record<string, unknown>,
  maxFutureMs: number,
): NewEvent {
  const now = Date.now();
  let eventId: string;
  let eventType: string;
  let eventTime = new Date(now);
  switch (source.scheme) {
    case 'github':
      eventId = requiredHeader(request, 'x-github-delivery');
      eventType = requiredHeader(request, 'x-github-event');
      break;
    case 'stripe': {
      eventId = requiredString(body, 'id');
      eventType = requiredString(body, 'type');
      const created = body.created;
      if (
        typeof created !== 'number' ||
        !Number.isInteger(created) ||
        created < 0 ||
        created * 1000 > now + maxFutureMs
      ) {
        throw new BadRequestError(400, 'invalid_body', '/created must be unix seconds, not in the future', [
          { path: '/created', message: 'must be unix seconds between 1970 and now' },
        ]);
      }
      eventTime = new Date(created * 1000);
      break;
    }
    case 'standard-webhooks':
      eventId = requiredHeader(request, 'webhook-id');
      eventType = typeof body.type === 'string' && body.type ? body.type : 'webhook';
      eventTime = new Date(Number(requiredHeader(request, 'webhook-timestamp')) * 1000);
      break;
    case 'hmac':
      eventId =
        (source.idHeader && headerValue(request, source.idHeader)) || createHash('sha256').update(raw).digest('hex');
      eventType =
        (source.typeHeader && headerValue(request, source.typeHeader)) ||
        (typeof body.type === 'string' && body.type ? body.type : 'webhook');
      break;
  }
  const keyPath = source.entityKeyPath ?? DEFAULT_ENTITY_PATHS[source.scheme];
  const key = keyPath ? atPath(body, keyPath) : undefined;
  return {
    source: source.name,
    eventId,
    eventType,
    entityKey: typeof key === 'string' || typeof key === 'number' ? String(key) : eventId,
    eventTime,
    payload: body,
    lineage: { via: 'webhook', scheme: source.scheme, delivery_id: eventId, request_id: String(request.id) },
  };
}
