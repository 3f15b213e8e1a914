import { isUtf8 } from 'node:buffer';
import avro from 'avsc';
import type { LakeEvent } from '../../libs/lake/event.ts';
import { scanJsonObject } from './json-scan.ts';

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

/** A payload's updated_at (raw: as JSON reads it): an ISO-8601 string or epoch milliseconds. */
function updatedAt(raw: unknown, fallback: number): number {
  if (raw === undefined || raw === null) return fallback;
  const ms = typeof raw === 'number' ? raw : typeof raw === 'string' ? Date.parse(raw) : Number.NaN;
  if (!Number.isFinite(ms) || ms < MIN_TIME || ms > MAX_TIME) {
    throw new Rejection('bad_updated_at', `payload.updated_at is not a valid time: ${JSON.stringify(raw)}`);
  }
  return ms;
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * A JSON-text payload's updated_at, or a Rejection when the text is not a JSON object. The scan
 * (json-scan.ts) answers for objects, the usual case, without building the value; anything else is
 * read by JSON.parse, whose reading decides and names what is wrong.
 */
function updatedAtInText(bytes: Buffer): unknown {
  const scan = scanJsonObject(bytes, 'updated_at');
  if (scan.object) {
    const { member } = scan;
    return member && JSON.parse(bytes.toString('utf8', member.start, member.end));
  }
  let payload: unknown;
  try {
    payload = JSON.parse(bytes.toString());
  } catch (error) {
    throw new Rejection('bad_payload', `payload is not valid JSON: ${(error as Error).message}`);
  }
  if (!isObject(payload)) throw new Rejection('bad_payload', 'payload is not a JSON object');
  return payload.updated_at;
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
  let updatedRaw: unknown;
  if (Buffer.isBuffer(value.payload)) {
    payloadOut = value.payload;
    if (!isUtf8(payloadOut)) throw new Rejection('bad_payload', 'payload is not valid UTF-8');
    updatedRaw = updatedAtInText(payloadOut);
  } else if (typeof value.payload === 'string') {
    payloadOut = value.payload;
    updatedRaw = updatedAtInText(Buffer.from(payloadOut));
  } else {
    if (!isObject(value.payload)) throw new Rejection('bad_payload', 'payload is not a JSON object');
    updatedRaw = value.payload.updated_at;
    payloadOut = JSON.stringify(value.payload);
  }
  const lineage: Record<string, string> = {};
  const given = value.lineage as Record<string, unknown> | undefined;
  for (const k in given) lineage[k] = String(given[k]);
  return {
    eventId,
    source,
    eventType,
    entityKey,
    eventTime,
    ingestedAt,
    updatedAt: updatedAt(updatedRaw, eventTime),
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

/** How the sink decodes the records of one writer schema: the Avro body from `start` to the end. */
export interface Reader {
  decode(record: Buffer, start: number): Record<string, unknown>;
}

type Field = { name: string; type: unknown };
const AVRO_LONG = avro.Type.forSchema('long');

/** Avro's own decoding of one value at `at`; avsc answers a negative offset when the bytes run out. */
function decodeAt(type: avro.Type, bytes: Buffer, at: number): { value: unknown; offset: number } {
  const decoded = type.decode(bytes, at);
  if (decoded.offset < 0) throw new Error('truncated buffer');
  return decoded;
}

/**
 * Reads a record whose `payload` is a string or bytes (a JSON text) without copying the payload: avsc
 * decodes the fields before and after it, and the payload is a view of the record's own bytes, which
 * stay in memory for the batch anyway. Copying it (avsc's bytes) or decoding it to a JavaScript string
 * made the largest share of the sink's allocations after the payload's own parse. An Avro string must
 * be UTF-8 and the gate checks that (checkEnvelope). Other writer schemas are read by avsc as they are.
 */
export function readerFor(writer: avro.Type): Reader {
  const whole: Reader = {
    decode(bytes, start) {
      const { value, offset } = decodeAt(writer, bytes, start);
      if (offset !== bytes.length) throw new Error('trailing data');
      return value as Record<string, unknown>;
    },
  };
  const schema = writer.schema() as { type?: unknown; name?: string; fields?: Field[] };
  const fields = schema.type === 'record' ? (schema.fields ?? []) : [];
  const at = fields.findIndex((f) => f.name === 'payload');
  if (at === -1 || (fields[at]!.type !== 'string' && fields[at]!.type !== 'bytes')) {
    return whole;
  }
  // One registry: a named type defined before the payload may be referenced after it.
  const registry = {};
  const part = (suffix: string, partFields: Field[]) =>
    avro.Type.forSchema({ type: 'record', name: `${schema.name}_${suffix}`, fields: partFields } as avro.Schema, {
      registry,
    });
  let head: avro.Type;
  let tail: avro.Type;
  try {
    head = part('head', fields.slice(0, at));
    tail = part('tail', fields.slice(at + 1));
  } catch {
    // A schema avsc reads whole but not in these two parts: read it whole (the payload copied).
    return whole;
  }
  return {
    decode(bytes, start) {
      const before = decodeAt(head, bytes, start);
      const length = decodeAt(AVRO_LONG, bytes, before.offset);
      const end = length.offset + (length.value as number);
      if ((length.value as number) < 0 || end > bytes.length) throw new Error('invalid payload length');
      const after = decodeAt(tail, bytes, end);
      if (after.offset !== bytes.length) throw new Error('trailing data');
      return Object.assign(before.value as object, { payload: bytes.subarray(length.offset, end) }, after.value);
    },
  };
}

export function decodeWith(reader: Reader, value: Buffer): Record<string, unknown> {
  try {
    // From byte 5 of the record itself: a view of the body would be one more object per record.
    return reader.decode(value, 5);
  } catch (error) {
    throw new Rejection('decode_failed', `Avro decoding failed: ${(error as Error).message}`, 'AvroDecodeError');
  }
}
