import { describe, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER } from '../../libs/kafka/index.ts';
import { DlqCounts, type DlqRecord, ReplayPlanner } from '../../services/sink/dlq.ts';

let dlqOffset = 0;
function dlqRecord(headers: Record<string, string>): DlqRecord {
  return { partition: 0, offset: String(dlqOffset++), key: null, value: Buffer.from('x'), headers };
}
const sinkReject = (offset: number, reason = 'bad_event_time') =>
  dlqRecord({
    [HEADER.eventId]: `e-${offset}`,
    [DLQ_HEADER.stage]: 'sink',
    [DLQ_HEADER.reason]: reason,
    [DLQ_HEADER.originalTopic]: 'conveyor.shop',
    [DLQ_HEADER.originalPartition]: '0',
    [DLQ_HEADER.originalOffset]: String(offset),
  });

describe('DLQ summary and replay plan', () => {
  // Offsets 1 and 2 rejected; the batch was retried after a crash before its commit, so both were
  // dead-lettered twice. A relay reject is one outbox row, sent twice by a retried relay batch.
  const relayReject = () =>
    dlqRecord({
      [HEADER.eventId]: 'r-1',
      [DLQ_HEADER.stage]: 'relay',
      [DLQ_HEADER.reason]: 'encode_failed',
      [DLQ_HEADER.originalTopic]: 'conveyor.shop',
    });
  const records = [sinkReject(1), sinkReject(2, 'empty_event_id'), sinkReject(1), sinkReject(2, 'empty_event_id')];
  records.push(relayReject(), relayReject(), sinkReject(3));

  it('counts each rejected record once, and says how many copies it left out', () => {
    // Read in two batches, a copy in each: the counts span batches.
    const counts = new DlqCounts(5);
    counts.add(records.slice(0, 2));
    counts.add(records.slice(2));
    const summary = counts.summary();
    expect(summary.total).toBe(4);
    expect(summary.repeats).toBe(3);
    expect(summary.byReason).toEqual({ 'sink/bad_event_time': 2, 'sink/empty_event_id': 1, 'relay/encode_failed': 1 });
    expect(summary.samples.map((s) => s.original)).toEqual([
      'conveyor.shop:0:1',
      'conveyor.shop:0:2',
      'conveyor.shop:?:?',
      'conveyor.shop:0:3',
    ]);
  });

  it('replays each rejected sink record once; relay records are left to the outbox', () => {
    const planner = new ReplayPlanner();
    const first = planner.take(records.slice(0, 2));
    const rest = planner.take(records.slice(2));
    const offsets = (batch: Map<string, DlqRecord[]>) =>
      (batch.get('conveyor.shop') ?? []).map((r) => r.headers[DLQ_HEADER.originalOffset]);
    expect([offsets(first), offsets(rest)]).toEqual([['1', '2'], ['3']]);
    expect(planner.planned).toEqual(new Map([['conveyor.shop', 3]]));
    expect(planner.notReplayable).toBe(1);

    const filtered = new ReplayPlanner({ reasons: ['empty_event_id'] });
    expect(offsets(filtered.take(records))).toEqual(['2']);
    expect(new ReplayPlanner({ topics: ['conveyor.other'] }).take(records).size).toBe(0);
  });
});
