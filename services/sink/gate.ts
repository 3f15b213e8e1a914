import { isUtf8 } from 'node:buffer';
import avro from 'avsc';
import type { LakeEvent } from '../../libs/lake/event.ts';

/** Why a record went to the DLQ. Each is a metric label and the value of the DLQ reason header. */
export type RejectReason =
  | 'empty_value'
  | 'not_wire_format'
  | 'unknown_schema'
  | 'decode_failed'
  | 'missing_event_id'
  | 'missing_field'
  | 'bad_event_time'
  | 'bad_ingested_at'
  | 'bad_payload'
  | 'bad_updated_at';

export class Rejection extends Error {
  constructor(
    readonly reason: RejectReason,
    message: string,
    readonly errorClass = 'DataQualityError',
  ) {
    super(message);
    this.name = 'Rejection';
  }
}

export interface RecordPosition {
  topic: string;
  partition: number;
  offset: string;
}

const MIN_TIME = Date.UTC(1970, 0, 1);
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

function text(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new Rejection(field === 'event_id' ? 'missing_event_id' : 'missing_field', `${field} is null or empty`);
  }
  return value;
}

function time(value: unknown, field: string, reason: RejectReason): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'number' ? value : Number.NaN;
  if (!Number.isFinite(ms)) throw new Rejection(reason, `${field} is not a time: ${String(value)}`);
  if (ms < MIN_TIME || ms > MAX_TIME) {
    // Raw milliseconds: far-out values are not representable as a Date, so cannot be formatted.
    throw new Rejection(reason, `${field} ${ms} ms is outside 1970-01-01..9999-12-31`);
  }
  return ms;
}

/** updated_at in a payload: an ISO-8601 string or epoch milliseconds. */
function updatedAt(payload: Record<string, unknown>, fallback: number): number {
  const raw = payload.updated_at;
  if (raw === undefined || raw === null) return fallback;
  const ms = typeof raw === 'number' ? raw : typeof raw === 'string' ? Date.parse(raw) : Number.NaN;
  if (!Number.isFinite(ms) || ms < MIN_TIME || ms > MAX_TIME) {
    throw new Rejection('bad_updated_at', `payload.updated_at is not a valid time: ${JSON.stringify(raw)}`);
  }
  return ms;
}

/**
 * The data-quality gate: a decoded envelope becomes a LakeEvent, or a Rejection naming what is wrong.
 * A JSON-text payload (bytes or string) must be a JSON object and is kept as is; a typed payload (a
 * record) is serialised to JSON.
 */
export function checkEnvelope(value: Record<string, unknown>, at: RecordPosition): LakeEvent {
  const eventId = text(value.event_id, 'event_id');
  const source = text(value.source, 'source');
  const eventType = text(value.event_type, 'event_type');
  const entityKey = text(value.entity_key, 'entity_key');
  const eventTime = time(value.event_time, 'event_time', 'bad_event_time');
  const ingestedAt = time(value.ingested_at, 'ingested_at', 'bad_ingested_at');
  // Bytes (a JSON-string payload read as Avro bytes, see readerFor), text, or a typed record.
  let payloadOut: Buffer | string;
  let payload: unknown;
  if (Buffer.isBuffer(value.payload) || typeof value.payload === 'string') {
    payloadOut = value.payload;
    if (typeof payloadOut !== 'string' && !isUtf8(payloadOut)) {
      throw new Rejection('bad_payload', 'payload is not valid UTF-8');
    }
    try {
      payload = JSON.parse(payloadOut.toString());
    } catch (error) {
      throw new Rejection('bad_payload', `payload is not valid JSON: ${(error as Error).message}`);
    }
  } else {
    payload = value.payload;
    payloadOut = JSON.stringify(payload);
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) {
    throw new Rejection('bad_payload', 'payload is not a JSON object');
  }
  const lineage: Record<string, string> = {};
  for (const [k, v] of Object.entries((value.lineage as Record<string, unknown> | undefined) ?? {})) {
    lineage[k] = String(v);
  }
  return {
    eventId,
    source,
    eventType,
    entityKey,
    eventTime,
    ingestedAt,
    updatedAt: updatedAt(payload as Record<string, unknown>, eventTime),
    payload: payloadOut,
    lineage,
    topic: at.topic,
    partition: at.partition,
    offset: at.offset,
  };
}

/** Confluent wire format: magic byte 0, 4-byte big-endian schema id, then Avro binary. */
export function wireId(value: Buffer | null): number {
  if (value === null || value.length === 0) throw new Rejection('empty_value', 'record has no value (tombstone)');
  if (value.length < 5 || value[0] !== 0) {
    throw new Rejection('not_wire_format', 'value is not in Confluent wire format (magic byte 0 + 4-byte schema id)');
  }
  return value.readUInt32BE(1);
}

/** How the sink reads one writer schema: the type to decode with and, when they differ, the resolver. */
export interface Reader {
  type: avro.Type;
  resolver?: avro.Resolver;
}

/**
 * Reads a record's string `payload` as Avro bytes (a string is promotable to bytes): the payload stays
 * UTF-8 bytes (avsc copies them once, off the V8 heap) until the bronze file. As a JavaScript string
 * (850 bytes in the benchmark) it lived as long as its batch and was the largest thing the collector
 * copied; now only the text parsed to check it is a string, and it dies at once. Invalid UTF-8, which
 * the string decoding replaced silently with U+FFFD, is now a `bad_payload` rejection. Other writer
 * schemas are read as they are.
 */
export function readerFor(writer: avro.Type): Reader {
  const schema = writer.schema() as { type?: unknown; fields?: Array<{ name: string; type: unknown }> };
  const payload = schema.type === 'record' ? schema.fields?.find((f) => f.name === 'payload') : undefined;
  if (payload?.type !== 'string') return { type: writer };
  const type = avro.Type.forSchema({
    ...schema,
    fields: schema.fields!.map((f) => (f === payload ? { ...f, type: 'bytes' } : f)),
  } as avro.Schema);
  return { type, resolver: type.createResolver(writer) };
}

export function decodeWith(reader: Reader, value: Buffer): Record<string, unknown> {
  try {
    return reader.type.fromBuffer(value.subarray(5), reader.resolver) as Record<string, unknown>;
  } catch (error) {
    throw new Rejection('decode_failed', `Avro decoding failed: ${(error as Error).message}`, 'AvroDecodeError');
  }
}
