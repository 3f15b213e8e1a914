import { randomUUID } from 'node:crypto';
import type { IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import type { Queryable } from '../../libs/db/index.ts';
import { DLQ_HEADER, DLQ_TOPIC, HEADER } from '../../libs/kafka/index.ts';
import { type OutboxEventRef, requeueFailed } from '../../libs/outbox/index.ts';

/** One DLQ record with its headers decoded to strings. */
export interface DlqRecord {
  partition: number;
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

function headerText(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) {
    if (value === undefined) continue;
    out[name] = (Array.isArray(value) ? value[value.length - 1] : value)?.toString() ?? '';
  }
  return out;
}

/**
 * Every committed record on the DLQ topic up to its end as of now, handed to `each` a batch at a time
 * (in offset order within a partition), read by a throw-away consumer group (deleted afterwards), so
 * inspecting or replaying never moves any shared position. Only a batch is held at once, whatever
 * the DLQ's size.
 */
export async function readDlq(
  kafka: Kafka,
  each: (records: DlqRecord[]) => Promise<void> | void,
  topic = DLQ_TOPIC,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `conveyor-dlq-reader-${randomUUID()}`;
  try {
    if (!(await admin.listTopics()).includes(topic)) return;
    const ends = new Map<number, bigint>();
    for (const p of await admin.fetchTopicOffsets(topic)) {
      if (BigInt(p.high) > BigInt(p.low)) ends.set(p.partition, BigInt(p.high));
    }
    if (ends.size === 0) return;
    const consumer = kafka.consumer({ groupId, readUncommitted: false });
    await consumer.connect();
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        consumer.on(consumer.events.CRASH, (event) => reject(event.payload.error));
        consumer
          .run({
            eachBatch: async ({ batch }) => {
              const end = ends.get(batch.partition);
              if (end === undefined) return;
              const records: DlqRecord[] = [];
              for (const m of batch.messages as KafkaMessage[]) {
                if (BigInt(m.offset) >= end) continue;
                records.push({
                  partition: batch.partition,
                  offset: m.offset,
                  key: m.key,
                  value: m.value,
                  headers: headerText(m.headers),
                });
              }
              if (records.length > 0) await each(records);
              // Transaction markers sit at offsets with no record: compare the batch's end, not the last record.
              if (BigInt(batch.lastOffset()) + 1n >= end) ends.delete(batch.partition);
              if (ends.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
    await admin.deleteGroups([groupId]).catch(() => undefined);
  } finally {
    await admin.disconnect();
  }
}

/**
 * The record that was rejected: a sink record by its original topic, partition and offset; a relay
 * record (an outbox row, no offset yet) by its event id; else the DLQ record itself.
 */
function rejectedRecord(r: DlqRecord): string {
  const h = r.headers;
  const stage = h[DLQ_HEADER.stage] ?? '?';
  const [topic, partition, offset] = [
    h[DLQ_HEADER.originalTopic],
    h[DLQ_HEADER.originalPartition],
    h[DLQ_HEADER.originalOffset],
  ];
  if (topic && partition && offset) return `${stage}\u0000${topic}\u0000${partition}\u0000${offset}`;
  const eventId = h[HEADER.eventId];
  if (eventId) return `${stage}\u0000${topic ?? ''}\u0000${eventId}`;
  return `dlq\u0000${r.partition}\u0000${r.offset}`;
}

/**
 * Which rejected records were seen. A batch is dead-lettered before its offsets are committed, so one
 * retried after a crash sends its rejects again; those copies are one rejected record, counted and
 * replayed once. Holds one short key per rejected record, not the records.
 */
class RejectedRecords {
  private readonly seen = new Set<string>();
  /** DLQ records that repeated one seen before. */
  repeats = 0;

  /** True for the first DLQ copy of a rejected record. */
  isFirst(r: DlqRecord): boolean {
    const key = rejectedRecord(r);
    if (this.seen.has(key)) {
      this.repeats += 1;
      return false;
    }
    this.seen.add(key);
    return true;
  }
}

export interface DlqSummary {
  /** Rejected records (DLQ copies of one record count once). */
  total: number;
  /** DLQ records that repeat a rejected record already counted. */
  repeats: number;
  byReason: Record<string, number>;
  samples: Array<Record<string, string>>;
}

/** Counts of rejected records by reason (and stage) and the first few of each reason, a batch at a time. */
export class DlqCounts {
  private readonly rejected = new RejectedRecords();
  private total = 0;
  private readonly byReason: Record<string, number> = {};
  private readonly samples: Array<Record<string, string>> = [];

  constructor(private readonly samplesPerReason = 3) {}

  add(records: DlqRecord[]): void {
    for (const r of records) {
      if (!this.rejected.isFirst(r)) continue;
      this.total += 1;
      const reason = `${r.headers[DLQ_HEADER.stage] ?? '?'}/${r.headers[DLQ_HEADER.reason] ?? 'unknown'}`;
      const count = (this.byReason[reason] ?? 0) + 1;
      this.byReason[reason] = count;
      if (count > this.samplesPerReason) continue;
      this.samples.push({
        reason,
        dlq_position: `${r.partition}:${r.offset}`,
        event_id: r.headers[HEADER.eventId] ?? '',
        original: `${r.headers[DLQ_HEADER.originalTopic] ?? '?'}:${r.headers[DLQ_HEADER.originalPartition] ?? '?'}:${r.headers[DLQ_HEADER.originalOffset] ?? '?'}`,
        message: r.headers[DLQ_HEADER.message] ?? '',
        failed_at: r.headers[DLQ_HEADER.failedAt] ?? '',
      });
    }
  }

  summary(): DlqSummary {
    return { total: this.total, repeats: this.rejected.repeats, byReason: this.byReason, samples: this.samples };
  }
}

/** `dlq inspect`: the DLQ read through once. */
export async function inspectDlq(kafka: Kafka, samplesPerReason = 3): Promise<DlqSummary> {
  const counts = new DlqCounts(samplesPerReason);
  await readDlq(kafka, (records) => counts.add(records));
  return counts.summary();
}

export const REPLAYED_FROM_HEADER = 'conveyor.dlq.replayed_from';

export interface ReplayFilter {
  reasons?: string[];
  topics?: string[];
}

/** What one DLQ batch asks for: sink records to re-publish, by original topic, and outbox rows to re-queue. */
export interface ReplayStep {
  republish: Map<string, DlqRecord[]>;
  requeue: OutboxEventRef[];
}

/**
 * Which DLQ records to replay, a batch at a time, each rejected record once: a sink record is
 * re-published to its original topic; a relay record (an outbox row that did not fit its contract) is
 * re-queued in the outbox, for the relay to encode again.
 */
export class ReplayPlanner {
  private readonly rejected = new RejectedRecords();
  /** Sink records planned so far, by original topic. */
  readonly planned = new Map<string, number>();
  /** Relay records planned so far. */
  plannedRequeues = 0;
  /** Matching records that name neither an original topic (sink) nor an outbox row (relay). */
  notReplayable = 0;

  constructor(private readonly filter: ReplayFilter = {}) {}

  take(records: DlqRecord[]): ReplayStep {
    const republish = new Map<string, DlqRecord[]>();
    const requeue: OutboxEventRef[] = [];
    const reasons = this.filter.reasons ?? [];
    const topics = this.filter.topics ?? [];
    for (const r of records) {
      const h = r.headers;
      if (reasons.length > 0 && !reasons.includes(h[DLQ_HEADER.reason] ?? '')) continue;
      const topic = h[DLQ_HEADER.originalTopic];
      if (topics.length > 0 && !topics.includes(topic ?? '')) continue;
      if (!this.rejected.isFirst(r)) continue;
      const stage = h[DLQ_HEADER.stage];
      const [source, eventId] = [h[HEADER.source], h[HEADER.eventId]];
      if (stage === 'sink' && topic) {
        const list = republish.get(topic) ?? [];
        list.push(r);
        republish.set(topic, list);
        this.planned.set(topic, (this.planned.get(topic) ?? 0) + 1);
      } else if (stage === 'relay' && source && eventId) {
        requeue.push({ source, eventId });
        this.plannedRequeues += 1;
      } else {
        this.notReplayable += 1;
      }
    }
    return { republish, requeue };
  }
}

export interface ReplayResult {
  /** Sink records re-published (or, in a dry run, to be), by original topic. */
  planned: Map<string, number>;
  sent: number;
  /** Relay records matched, and how many of their outbox rows were still failed and are re-queued. */
  plannedRequeues: number;
  requeued: number;
  notReplayable: number;
}

/**
 * `dlq replay`, a DLQ batch at a time; with `dryRun`, only counts. A sink record is re-published to its
 * original topic with the original key, value and headers (the DLQ's own headers removed, the DLQ
 * position added); the event id travels in the value and the headers, so the sink's dedupe makes a
 * replay of a replay harmless. A relay record's outbox row is re-queued if it is still failed, so
 * replaying it twice is harmless too. Records dead-lettered again while it runs are past the end it
 * reads to.
 */
export async function replayDlq(
  kafka: Kafka,
  outbox: Queryable,
  filter: ReplayFilter,
  { dryRun = false } = {},
): Promise<ReplayResult> {
  const planner = new ReplayPlanner(filter);
  const producer = dryRun ? undefined : kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer?.connect();
  const dlqHeaders = new Set<string>(Object.values(DLQ_HEADER));
  let sent = 0;
  let requeued = 0;
  try {
    await readDlq(kafka, async (records) => {
      const { republish, requeue } = planner.take(records);
      requeued += await requeueFailed(outbox, requeue, { dryRun });
      if (!producer) return;
      for (const [topic, list] of republish) {
        await producer.send({
          topic,
          acks: -1,
          messages: list.map((r) => {
            const headers: Record<string, string> = {
              [REPLAYED_FROM_HEADER]: `${DLQ_TOPIC}:${r.partition}:${r.offset}`,
            };
            for (const [name, value] of Object.entries(r.headers)) if (!dlqHeaders.has(name)) headers[name] = value;
            return { key: r.key, value: r.value, headers };
          }),
        });
        sent += list.length;
      }
    });
  } finally {
    await producer?.disconnect();
  }
  return {
    planned: planner.planned,
    sent,
    plannedRequeues: planner.plannedRequeues,
    requeued,
    notReplayable: planner.notReplayable,
  };
}
