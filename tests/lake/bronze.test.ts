import { describe, expect, it } from 'vitest';
import { type BronzeFile, bronzeUnits, type RotationPolicy } from '../../libs/lake/bronze.ts';
import { type LakeEvent, utcDate, utcHour } from '../../libs/lake/event.ts';
import { ByteChunks, JsonLine } from '../../libs/lake/json-bytes.ts';

const HOUR = 3600_000;
const t0 = Date.UTC(2026, 2, 1, 10, 0, 0);

function event(offset: number, over: Partial<LakeEvent> = {}): LakeEvent {
  return {
    eventId: `e${offset}`,
    source: 'shop',
    eventType: 'order/created',
    entityKey: 'k',
    eventTime: t0,
    ingestedAt: t0 + offset * 1000,
    updatedAt: t0,
    payload: '{"a":1}',
    lineage: {},
    topic: 'conveyor.shop',
    partition: 2,
    offset: String(offset),
    ...over,
  };
}

const policy = { maxRecords: 3, maxBytes: 1 << 20, maxSpanMs: HOUR };

const bronzeFiles = (events: LakeEvent[], rotation: RotationPolicy): BronzeFile[] =>
  bronzeUnits(events, rotation).flatMap((u) => u.files);

describe('bronze files', () => {
  it('uses the seed-004 layout, escapes partition values and names files by topic, partition and first offset', () => {
    const [file] = bronzeFiles([event(7)], policy);
    expect(file!.key).toBe(
      'bronze/source=shop/event_type=order%2Fcreated/event_date=2026-03-01/ingest_date=2026-03-01/hour=10/conveyor.shop+2+00000000000000000007.jsonl',
    );
    expect(JSON.parse(Buffer.concat(file!.chunks).toString())).toMatchObject({
      event_id: 'e7',
      updated_at: '2026-03-01T10:00:00.000Z',
      payload: { a: 1 },
      kafka: { offset: 7 },
    });
    // The payload is embedded byte for byte, whitespace included.
    const [spaced] = bronzeFiles([event(8, { payload: '{ "a" : 1.50 }' })], policy);
    expect(Buffer.concat(spaced!.chunks).toString()).toContain('"payload":{ "a" : 1.50 },');
  });

  it('rotates by record count and by record time, never by the clock, so the same records give the same files', () => {
    const events = [0, 1, 2, 3, 4].map((o) => event(o));
    events.push(event(5, { ingestedAt: t0 + 2 * HOUR - 1 }), event(6, { ingestedAt: t0 + 2 * HOUR }));
    const files = bronzeFiles(events, { ...policy, maxSpanMs: HOUR / 2 });
    expect(files.map((f) => [f.firstOffset, f.records])).toEqual([
      ['0', 3],
      ['3', 2],
      ['5', 1],
      ['6', 1],
    ]);
    expect(bronzeFiles(events, { ...policy, maxSpanMs: HOUR / 2 })).toEqual(files);
  });

  it("ends every folder's file where one rotates, so each commit unit has one file per folder", () => {
    // Two folders (event types), interleaved; "a" reaches 3 records at offset 4.
    const events = [0, 1, 2, 3, 4, 5, 6].map((o) => event(o, { eventType: o % 2 ? 'b' : 'a' }));
    const units = bronzeUnits(events, policy);
    expect(units.map((u) => [u.events, u.files.map((f) => [f.key.split('/')[2], f.firstOffset, f.records])])).toEqual([
      [
        6,
        [
          ['event_type=a', '0', 3],
          ['event_type=b', '1', 3],
        ],
      ],
      [1, [['event_type=a', '6', 1]]],
    ]);
  });

  it('rotates by bytes', () => {
    const line = bronzeFiles([event(0)], policy)[0]!.bytes;
    const files = bronzeFiles(
      [0, 1, 2].map((o) => event(o)),
      { ...policy, maxBytes: line * 2 },
    );
    expect(files.map((f) => f.records)).toEqual([2, 1]);
  });

  it('formats UTC dates, hours and timestamps exactly as Date does', () => {
    // A timestamp as a bronze line writes it (quoted), unquoted.
    const utcIso = (ms: number) => {
      const chunks = new ByteChunks();
      const line = new JsonLine();
      line.start(chunks, 64);
      line.isoTime(ms);
      chunks.commit(line.length);
      return JSON.parse(Buffer.concat(chunks.toChunks()).toString()) as string;
    };
    const max = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
    const times = [0, 1, 999, 86_399_999, 86_400_000, t0, t0 + 7, max];
    // Spread over the whole range, deterministically.
    for (let i = 1; i <= 2000; i++) times.push((i * 124_999_999_937) % max);
    for (const ms of times) {
      const iso = new Date(ms).toISOString();
      expect([utcIso(ms), utcDate(ms), utcHour(ms)]).toEqual([iso, iso.slice(0, 10), iso.slice(11, 13)]);
    }
  });
});
