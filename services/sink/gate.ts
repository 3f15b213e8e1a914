import type avro from 'avsc';
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
 * A JSON-string payload must be a JSON object; a typed payload (a record) is serialised to JSON.
 */
export function checkEnvelope(value: Record<string, unknown>, at: RecordPosition): LakeEvent {
  const eventId = text(value.event_id, 'event_id');
  const source = text(value.source, 'source');
  const eventType = text(value.event_type, 'event_type');
  const entityKey = text(value.entity_key, 'entity_key');
  const eventTime = time(value.event_time, 'event_time', 'bad_event_time');
  const ingestedAt = time(value.ingested_at, 'ingested_at', 'bad_ingested_at');
  let payloadText: string;
  let payload: unknown;
  if (typeof value.payload === 'string') {
    payloadText = value.payload;
    try {
      payload = JSON.parse(payloadText);
    } catch (error) {
      throw new Rejection('bad_payload', `payload is not valid JSON: ${(error as Error).message}`);
    }
  } else {
    payload = value.payload;
    payloadText = JSON.stringify(payload);
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
    payload: payloadText,
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

export function decodeWith(type: avro.Type, value: Buffer): Record<string, unknown> {
  try {
    return type.fromBuffer(value.subarray(5)) as Record<string, unknown>;
  } catch (error) {
    throw new Rejection('decode_failed', `Avro decoding failed: ${(error as Error).message}`, 'AvroDecodeError');
  }
}
