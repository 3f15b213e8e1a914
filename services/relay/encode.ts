import { firstInvalidPath, type TopicContract } from '../../libs/registry/contracts.ts';

/** An outbox row joined with its raw event, as the relay reads it. */
export interface PendingRow {
  id: string;
  topic: string;
  source: string;
  event_id: string;
  event_type: string;
  entity_key: string;
  /** Times as epoch milliseconds: what Avro's timestamp-millis wants, and cheaper to read than Dates. */
  event_ms: number;
  ingested_ms: number;
  created_ms: number;
  /** jsonb as text, so an untyped payload is never parsed and re-serialised. */
  payload: string;
  lineage: string;
}

export class EncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EncodeError';
  }
}

/** The Avro value of the envelope for one row; lineage gains the outbox id. */
export function envelopeOf(row: PendingRow, contract: TopicContract): Record<string, unknown> {
  const lineage: Record<string, string> = { outbox_id: row.id };
  if (row.lineage !== '{}') {
    for (const [key, value] of Object.entries(JSON.parse(row.lineage) as Record<string, unknown>)) {
      lineage[key] = typeof value === 'string' ? value : JSON.stringify(value);
    }
  }
  return {
    event_id: row.event_id,
    source: row.source,
    event_type: row.event_type,
    entity_key: row.entity_key,
    event_time: row.event_ms,
    ingested_at: row.ingested_ms,
    payload: contract.typedPayload ? (JSON.parse(row.payload) as unknown) : row.payload,
    lineage,
  };
}

// avsc's toBuffer encodes into a shared 1 KB buffer; a larger envelope (most of them) is encoded a
// second time into a zero-filled buffer, then copied again behind the wire header. Encoding once into
// scratch space that already holds the header, then copying out, does a third of that work.
let scratch = Buffer.allocUnsafe(64 * 1024);

function encodeInto(schemaId: number, type: TopicContract['type'], value: unknown): number {
  scratch.writeUInt8(0, 0);
  scratch.writeUInt32BE(schemaId, 1);
  return type.encode(value, scratch, 5);
}

/** Confluent wire-format bytes for the row, or an EncodeError naming the field that does not fit. */
export function encodeRow(row: PendingRow, contract: TopicContract, schemaId: number): Buffer {
  const value = envelopeOf(row, contract);
  let end: number;
  try {
    end = encodeInto(schemaId, contract.type, value);
    if (end < 0) {
      // avsc answers how many bytes were missing.
      scratch = Buffer.allocUnsafe(2 * (scratch.length - end));
      end = encodeInto(schemaId, contract.type, value);
    }
  } catch (error) {
    // Only on failure: walk the value to name the field that does not fit.
    const where = firstInvalidPath(contract.type, value) ?? (error as Error).message;
    throw new EncodeError(`event ${row.event_id} does not match the ${row.source} contract: ${where}`);
  }
  return Buffer.from(scratch.subarray(0, end));
}
