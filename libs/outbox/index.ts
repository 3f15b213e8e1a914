import type { Queryable } from '../db/index.ts';

/**
 * The hand-off every ingestion path uses: inside the caller's own transaction, store each event once
 * in raw_events and, only when it is new, give it one outbox row for the relay to publish.
 */

/** Fixed for the life of a database: changing it would move keys between shards mid-stream. */
export const OUTBOX_SHARDS = 16;

export interface NewEvent {
  source: string;
  eventId: string;
  eventType: string;
  /** Kafka key; events of one entity key are published in the order they were appended. */
  entityKey: string;
  eventTime: Date;
  payload: Record<string, unknown>;
  /** Where the event came from (delivery id, request URL, file, ...). Values are strings. */
  lineage?: Record<string, string>;
  /** Defaults to topicFor(source). */
  topic?: string;
}

export type AppendStatus = 'ACCEPTED' | 'DUPLICATE';

export interface AppendResult {
  eventId: string;
  status: AppendStatus;
  /** The outbox row created for an accepted event. */
  outboxId?: string;
}

export class OutboxInputError extends Error {
  constructor(
    readonly index: number,
    readonly field: string,
    problem: string,
  ) {
    super(`event[${index}].${field}: ${problem}`);
    this.name = 'OutboxInputError';
  }
}

const TOPIC_SAFE = /^[A-Za-z0-9._-]+$/;
/** A JSON \u0000 escape not preceded by an escaped backslash. */
const ESCAPED_NUL = /(^|[^\\])(\\\\)*\\u0000/;
/** JSON.stringify escapes a UTF-16 surrogate only when it is unpaired, which Postgres refuses. */
const ESCAPED_LONE_SURROGATE = /(^|[^\\])(\\\\)*\\ud[89a-f][0-9a-f]{2}/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(^|[^\ud800-\udbff])[\udc00-\udfff]/;

/**
 * A time read from a record (an API's field, a file's column): ISO-8601 text, or an epoch number in
 * seconds (below 1e11) or milliseconds; anything else is unparseable.
 */
export function parseTime(value: unknown): Date | undefined {
  let date: Date | undefined;
  if (typeof value === 'string' && /^\d{4}-\d{2}-\d{2}/.test(value)) date = new Date(value);
  else if (typeof value === 'number' && Number.isFinite(value)) date = new Date(value < 1e11 ? value * 1000 : value);
  return date && !Number.isNaN(date.getTime()) ? date : undefined;
}

/** Topic naming: one topic per source. Its value subject is `<topic>-value` (TopicNameStrategy). */
export function topicFor(source: string): string {
  return `conveyor.${source}`;
}

/** FNV-1a: a small, stable hash, so a key's shard never depends on the runtime or the database. */
export function shardOf(entityKey: string, shards = OUTBOX_SHARDS): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < entityKey.length; i++) {
    hash ^= entityKey.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/** Checks one event's fields; its payload is serialised later, with the whole batch, in one pass. */
function validate(event: NewEvent, index: number): void {
  const text = (field: keyof NewEvent, max: number) => {
    const value = event[field];
    if (typeof value !== 'string' || value.length === 0) {
      throw new OutboxInputError(index, field, 'must be a non-empty string');
    }
    if (value.length > max) throw new OutboxInputError(index, field, `longer than ${max} characters`);
    if (value.includes('\u0000')) throw new OutboxInputError(index, field, 'contains a NUL character');
    if (LONE_SURROGATE.test(value)) throw new OutboxInputError(index, field, LONE_SURROGATE_PROBLEM);
  };
  text('source', 200);
  if (!TOPIC_SAFE.test(event.source)) {
    throw new OutboxInputError(index, 'source', 'may contain only letters, digits, ".", "_" and "-"');
  }
  text('eventId', 500);
  text('eventType', 200);
  text('entityKey', 1000);
  if (event.topic !== undefined && !TOPIC_SAFE.test(event.topic)) {
    throw new OutboxInputError(index, 'topic', 'not a valid Kafka topic name');
  }
  if (!(event.eventTime instanceof Date) || Number.isNaN(event.eventTime.getTime())) {
    throw new OutboxInputError(index, 'eventTime', 'must be a valid date');
  }
  const year = event.eventTime.getUTCFullYear();
  if (year < 1970 || year > 9999) throw new OutboxInputError(index, 'eventTime', `year ${year} is out of range`);
  if (event.payload === null || typeof event.payload !== 'object' || Array.isArray(event.payload)) {
    throw new OutboxInputError(index, 'payload', 'must be a JSON object');
  }
}

// One statement, one round trip for the whole batch: insert the raw events, skip those already stored,
// and give an outbox row only to the ones this statement inserted, in input order. The rows travel as
// one JSON document: one JSON.stringify here and one jsonb parse there, instead of a text array per
// column that pg escapes element by element and Postgres parses again (measured faster for batches).
const APPEND_SQL = `
WITH input AS (
  SELECT * FROM jsonb_to_recordset($1::jsonb)
    AS t(ord int, source text, event_id text, event_type text, entity_key text, event_time timestamptz,
         payload jsonb, lineage jsonb, topic text, shard smallint)
),
inserted AS (
  INSERT INTO raw_events (source, event_id, event_type, entity_key, event_time, payload, lineage)
  SELECT source, event_id, event_type, entity_key, event_time, payload, lineage FROM input ORDER BY ord
  ON CONFLICT (source, event_id) DO NOTHING
  RETURNING source, event_id
),
queued AS (
  INSERT INTO outbox (source, event_id, topic, shard)
  SELECT i.source, i.event_id, i.topic, i.shard
  FROM input i JOIN inserted USING (source, event_id)
  ORDER BY i.ord
  RETURNING id, source, event_id
)
SELECT input.ord, queued.id::text AS outbox_id
FROM input LEFT JOIN queued USING (source, event_id)
ORDER BY input.ord`;

const LONE_SURROGATE_PROBLEM = 'contains an unpaired UTF-16 surrogate (not valid Unicode), which Postgres cannot store';

/** Why Postgres would refuse this payload (jsonb holds neither NUL nor unpaired surrogates), if it would. */
function payloadProblem(serialised: string): string | undefined {
  if (serialised.includes('\\u0000') && ESCAPED_NUL.test(serialised)) return 'contains a \\u0000 (NUL) character';
  if (serialised.includes('\\ud') && ESCAPED_LONE_SURROGATE.test(serialised)) return LONE_SURROGATE_PROBLEM;
  return undefined;
}

function checkPayload(payload: Record<string, unknown>, index: number): void {
  const problem = payloadProblem(JSON.stringify(payload));
  if (problem) throw new OutboxInputError(index, 'payload', problem);
}

/**
 * appendEvents' checks, without writing: for a caller that commits one input in several transactions
 * (a big dropped file) and must refuse bad input before the first. Throws OutboxInputError.
 */
export function checkEvents(events: readonly NewEvent[]): void {
  events.forEach(validate);
  events.forEach((event, index) => {
    checkPayload(event.payload, index);
  });
}

/** One element of the statement's JSON document; the names are the SQL column names. */
interface InputRow {
  ord: number;
  source: string;
  event_id: string;
  event_type: string;
  entity_key: string;
  event_time: string;
  payload: Record<string, unknown>;
  lineage: Record<string, string>;
  topic: string;
  shard: number;
}

/**
 * Appends events inside the caller's transaction (pass the transaction's client). Returns, per input
 * event and in input order, ACCEPTED (stored now, outbox row created) or DUPLICATE (already stored:
 * nothing written). A repeat of an event earlier in the same batch is a DUPLICATE too. Invalid input
 * throws OutboxInputError before anything is written.
 */
export async function appendEvents(client: Queryable, events: NewEvent[]): Promise<AppendResult[]> {
  events.forEach(validate);
  const seen = new Set<string>();
  const rows: InputRow[] = [];
  events.forEach((event, index) => {
    const key = `${event.source}\u0000${event.eventId}`;
    if (seen.has(key)) {
      // A repeat writes nothing, but its payload is still checked like every other.
      checkPayload(event.payload, index);
      return;
    }
    seen.add(key);
    rows.push({
      ord: index,
      source: event.source,
      event_id: event.eventId,
      event_type: event.eventType,
      entity_key: event.entityKey,
      event_time: event.eventTime.toISOString(),
      payload: event.payload,
      lineage: event.lineage ?? {},
      topic: event.topic ?? topicFor(event.source),
      shard: shardOf(event.entityKey),
    });
  });
  const outboxIds = new Map<number, string | null>();
  if (rows.length > 0) {
    const document = JSON.stringify(rows);
    // Name the payload Postgres would refuse before anything is sent. The cheap test of the whole
    // document keeps the per-payload search off the common path.
    if (payloadProblem(document)) {
      for (const row of rows) checkPayload(row.payload, row.ord);
    }
    // Named, so each connection parses and plans the statement once rather than on every append.
    const result = await client.query<{ ord: number; outbox_id: string | null }>({
      name: 'conveyor_append_events',
      text: APPEND_SQL,
      values: [document],
    });
    for (const row of result.rows) outboxIds.set(row.ord, row.outbox_id);
  }
  return events.map((event, index) => {
    const outboxId = outboxIds.get(index);
    return outboxId
      ? { eventId: event.eventId, status: 'ACCEPTED', outboxId }
      : { eventId: event.eventId, status: 'DUPLICATE' };
  });
}

/** An outbox row by its event: what a relay-stage DLQ record names. */
export interface OutboxEventRef {
  source: string;
  eventId: string;
}

/**
 * Puts outbox rows the relay dead-lettered (their payload did not fit the contract) back in line, once
 * the cause is fixed; a relay publishes them with the contract of the day, or dead-letters them again.
 * Only rows still marked failed count and change, so a second call is a no-op; with `dryRun` nothing
 * changes. Returns how many rows were (or would be) put back.
 */
export async function requeueFailed(
  client: Queryable,
  rows: OutboxEventRef[],
  { dryRun = false } = {},
): Promise<number> {
  if (rows.length === 0) return 0;
  const values = [rows.map((r) => r.source), rows.map((r) => r.eventId)];
  const failed = `outbox.source = r.source AND outbox.event_id = r.event_id AND outbox.failed_at IS NOT NULL`;
  const { rows: counted } = await client.query<{ n: number }>(
    dryRun
      ? `SELECT count(*)::int AS n FROM outbox JOIN unnest($1::text[], $2::text[]) AS r(source, event_id) ON ${failed}`
      : `WITH requeued AS (
           UPDATE outbox SET failed_at = NULL, failure = NULL
           FROM unnest($1::text[], $2::text[]) AS r(source, event_id) WHERE ${failed} RETURNING 1)
         SELECT count(*)::int AS n FROM requeued`,
    values,
  );
  const n = counted[0]!.n;
  // Relays poll too; this wakes them now.
  if (n > 0 && !dryRun) await client.query(`SELECT pg_notify('conveyor_outbox', '')`);
  return n;
}
