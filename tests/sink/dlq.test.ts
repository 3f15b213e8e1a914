import { describe, expect, it } from 'vitest';
import { DLQ_HEADER, HEADER } from '../../libs/kafka/index.ts';
import { DlqCounts, type DlqRecord, ReplayPlanner, type ReplayStep } from '../../services/sink/dlq.ts';

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
      [HEADER.source]: 'shop',
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

  it('re-publishes each rejected sink record once and re-queues each relay record once', () => {
    const planner = new ReplayPlanner();
    const first = planner.take(records.slice(0, 2));
    const rest = planner.take(records.slice(2));
    const offsets = (step: ReplayStep) =>
      (step.republish.get('conveyor.shop') ?? []).map((r) => r.headers[DLQ_HEADER.originalOffset]);
    expect([offsets(first), offsets(rest)]).toEqual([['1', '2'], ['3']]);
    expect(planner.planned).toEqual(new Map([['conveyor.shop', 3]]));
    expect([first.requeue, rest.requeue]).toEqual([[], [{ source: 'shop', eventId: 'r-1' }]]);
    expect([planner.plannedRequeues, planner.notReplayable]).toEqual([1, 0]);

    const filtered = new ReplayPlanner({ reasons: ['empty_event_id'] });
    expect(offsets(filtered.take(records))).toEqual(['2']);
    const elsewhere = new ReplayPlanner({ topics: ['conveyor.other'] }).take(records);
    expect([elsewhere.republish.size, elsewhere.requeue.length]).toEqual([0, 0]);
  });

  it('leaves alone a record that names neither an original topic nor an outbox row', () => {
    const planner = new ReplayPlanner();
    const step = planner.take([
      dlqRecord({ [DLQ_HEADER.stage]: 'sink', [DLQ_HEADER.reason]: 'x' }),
      dlqRecord({ [DLQ_HEADER.stage]: 'relay', [DLQ_HEADER.reason]: 'encode_failed', [HEADER.eventId]: 'r-2' }),
    ]);
    expect([step.republish.size, step.requeue.length, planner.notReplayable]).toEqual([0, 0, 2]);
  });
});
