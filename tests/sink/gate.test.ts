import { describe, expect, it } from 'vitest';
import { checkEnvelope, Rejection, wireId } from '../../services/sink/gate.ts';

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

  it('checks the Confluent wire format before decoding', () => {
    expect(() => wireId(null)).toThrow(Rejection);
    expect(() => wireId(Buffer.from([1, 0, 0, 0, 1, 2]))).toThrow('magic byte 0');
    expect(wireId(Buffer.from([0, 0, 0, 1, 2, 9]))).toBe(258);
  });
});
