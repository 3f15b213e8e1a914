import { describe, expect, it } from 'vitest';
import { contractFor } from '../../libs/registry/contracts.ts';
import { encodeWire } from '../../libs/registry/index.ts';
import { EncodeError, encodeRow, envelopeOf, type PendingRow } from '../../services/relay/encode.ts';

function row(id: number, payload: string): PendingRow {
  return {
    id: String(id),
    topic: 'conveyor.encode-test',
    source: 'encode-test',
    event_id: `e-${id}`,
    event_type: 'thing.changed',
    entity_key: `k-${id}`,
    event_ms: Date.UTC(2026, 10, 1),
    ingested_ms: Date.UTC(2026, 10, 1, 0, 0, 1),
    created_ms: Date.UTC(2026, 10, 1, 0, 0, 2),
    payload,
    lineage: '{"request": "r-1"}',
  };
}

describe('encodeRow', () => {
  const contract = contractFor('encode-test');

  it('writes the same Confluent wire-format bytes as encodeWire, for small rows and rows larger than its scratch space', () => {
    // 100 kB payloads outgrow the scratch space; the small rows after them must still come out right.
    const payloads = [
      '{"a": 1}',
      JSON.stringify({ big: 'x'.repeat(100_000) }),
      '{}',
      `{"note": "${'y'.repeat(2000)}"}`,
    ];
    payloads.forEach((payload, i) => {
      const r = row(i + 1, payload);
      const bytes = encodeRow(r, contract, 42);
      expect(bytes.equals(encodeWire(42, contract.type, envelopeOf(r, contract)))).toBe(true);
    });
  });

  it('returns buffers that later rows do not overwrite', () => {
    const first = encodeRow(row(1, '{"a": 1}'), contract, 7);
    const copy = Buffer.from(first);
    encodeRow(row(2, '{"b": 2}'), contract, 7);
    expect(first.equals(copy)).toBe(true);
  });

  it('names the field when a typed payload does not fit', () => {
    const typed = { ...contract, typedPayload: true };
    expect(() => encodeRow(row(1, '{"seq": "four"}'), typed, 1)).toThrow(EncodeError);
    expect(() => encodeRow(row(1, '{"seq": "four"}'), typed, 1)).toThrow(/payload/);
  });
});
