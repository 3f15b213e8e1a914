import fs from 'node:fs';
import path from 'node:path';
import avro from 'avsc';
import { describe, expect, it } from 'vitest';
import { DEFAULT_SCHEMAS_DIR } from '../../libs/registry/contracts.ts';
import { encodeWire } from '../../libs/registry/index.ts';
import { checkEnvelope, decodeWith, Rejection, readerFor, wireId } from '../../services/sink/gate.ts';

const envelope = avro.Type.forSchema(
  JSON.parse(fs.readFileSync(path.join(DEFAULT_SCHEMAS_DIR, 'envelope.avsc'), 'utf8')),
);

const at = { topic: 'conveyor.s', partition: 0, offset: '5' };
const good = {
  event_id: 'e1',
  source: 's',
  event_type: 't',
  entity_key: 'k',
  event_time: Date.UTC(2026, 0, 1),
  ingested_at: Date.UTC(2026, 0, 2),
  payload: '{"updated_at":"2026-01-03T00:00:00Z"}',
  lineage: { outbox_id: '9' },
};

function reason(value: Record<string, unknown>): string {
  try {
    checkEnvelope(value, at);
  } catch (error) {
    return (error as Rejection).reason;
  }
  return 'accepted';
}

describe('data-quality gate', () => {
  it('accepts a good envelope and takes updated_at from the payload', () => {
    const event = checkEnvelope(good, at);
    expect(event.updatedAt).toBe(Date.UTC(2026, 0, 3));
    expect(event.offset).toBe('5');
  });

  it('names what is wrong', () => {
    expect(reason({ ...good, event_id: '' })).toBe('missing_event_id');
    expect(reason({ ...good, event_id: null })).toBe('missing_event_id');
    expect(reason({ ...good, entity_key: '' })).toBe('missing_field');
    expect(reason({ ...good, event_time: Number.NaN })).toBe('bad_event_time');
    expect(reason({ ...good, event_time: -1 })).toBe('bad_event_time');
    expect(reason({ ...good, ingested_at: 1e17 })).toBe('bad_ingested_at');
    expect(reason({ ...good, payload: '[1]' })).toBe('bad_payload');
    expect(reason({ ...good, payload: '{' })).toBe('bad_payload');
    expect(reason({ ...good, payload: '{"updated_at":"yesterday"}' })).toBe('bad_updated_at');
  });

  it('serialises a typed (record) payload to JSON', () => {
    expect(checkEnvelope({ ...good, payload: { amount: 3 } }, at).payload).toBe('{"amount":3}');
  });

  it('reads a JSON-string payload as bytes and keeps them as sent, non-ASCII and spacing included', () => {
    const text = '{ "note": "é ✓",  "updated_at": 1767225600000 }';
    const reader = readerFor(envelope);
    const wire = encodeWire(7, envelope, { ...good, payload: text });
    const value = decodeWith(reader, wire);
    expect(Buffer.isBuffer(value.payload)).toBe(true);
    // A view of the record's bytes, not a copy.
    expect((value.payload as Buffer).buffer).toBe(wire.buffer);
    const { payload: _, ...rest } = value;
    const { payload: __, ...expected } = envelope.fromBuffer(wire.subarray(5)) as Record<string, unknown>;
    expect(rest).toEqual({ ...expected });
    const event = checkEnvelope(value, at);
    expect(Buffer.from(event.payload).equals(Buffer.from(text, 'utf8'))).toBe(true);
    expect(event.updatedAt).toBe(1767225600000);
  });

  it('rejects payload bytes that are not UTF-8 (an Avro string must be)', () => {
    expect(reason({ ...good, payload: Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]) })).toBe('bad_payload');
  });

  it('reads a typed payload as the writer wrote it', () => {
    const typed = avro.Type.forSchema({
      type: 'record',
      name: 'Typed',
      fields: [
        { name: 'event_id', type: 'string' },
        { name: 'payload', type: { type: 'record', name: 'P', fields: [{ name: 'amount', type: 'int' }] } },
      ],
    });
    const reader = readerFor(typed);
    expect(decodeWith(reader, encodeWire(8, typed, { event_id: 'e', payload: { amount: 3 } })).payload).toEqual({
      amount: 3,
    });
  });

  it('reads the fields around the payload with named types shared across it, and refuses bad lengths', () => {
    const split = avro.Type.forSchema({
      type: 'record',
      name: 'Split',
      fields: [
        { name: 'kind', type: { type: 'enum', name: 'Kind', symbols: ['A', 'B'] } },
        { name: 'payload', type: 'bytes' },
        { name: 'again', type: 'Kind' },
        { name: 'n', type: 'long' },
      ],
    });
    const reader = readerFor(split);
    const record = { kind: 'B', payload: Buffer.from('{"a":1}'), again: 'A', n: 1234567 };
    const wire = encodeWire(9, split, record);
    expect({ ...decodeWith(reader, wire) }).toEqual(record);
    const failure = (bytes: Buffer) => {
      try {
        decodeWith(reader, bytes);
      } catch (error) {
        return `${(error as Rejection).reason}: ${(error as Error).message}`;
      }
      return 'decoded';
    };
    expect(failure(wire.subarray(0, wire.length - 1))).toBe('decode_failed: Avro decoding failed: truncated buffer');
    expect(failure(Buffer.concat([wire, Buffer.from([0])]))).toBe('decode_failed: Avro decoding failed: trailing data');
    // The payload's length (zigzag 200 = 100 bytes) runs past the record's end.
    const longer = Buffer.from(wire);
    longer[6] = 200;
    expect(failure(longer)).toMatch(/^decode_failed: Avro decoding failed: (invalid payload length|truncated buffer)$/);
  });

  it('reads a schema whole when it cannot be read in parts around the payload', () => {
    // A nested type already has the name the part before the payload would take.
    const odd = avro.Type.forSchema({
      type: 'record',
      name: 'Odd',
      fields: [
        { name: 'meta', type: { type: 'record', name: 'Odd_head', fields: [{ name: 'n', type: 'int' }] } },
        { name: 'payload', type: 'string' },
      ],
    });
    const value = decodeWith(readerFor(odd), encodeWire(10, odd, { meta: { n: 1 }, payload: '{"a":1}' }));
    expect(value).toEqual({ meta: { n: 1 }, payload: '{"a":1}' });
  });

  it('checks the Confluent wire format before decoding', () => {
    expect(() => wireId(null)).toThrow(Rejection);
    expect(() => wireId(Buffer.from([1, 0, 0, 0, 1, 2]))).toThrow('magic byte 0');
    expect(wireId(Buffer.from([0, 0, 0, 1, 2, 9]))).toBe(258);
  });
});
