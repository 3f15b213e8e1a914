import { randomUUID } from 'node:crypto';
import type { IHeaders, Kafka, KafkaMessage } from 'kafkajs';
import { DLQ_HEADER, DLQ_TOPIC, HEADER } from '../../libs/kafka/index.ts';

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
 * Every committed record on the DLQ topic up to its end as of now, read by a throw-away consumer group
 * (deleted afterwards), so inspecting or replaying never moves any shared position.
 */
export async function readDlq(kafka: Kafka, topic = DLQ_TOPIC): Promise<DlqRecord[]> {
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `conveyor-dlq-reader-${randomUUID()}`;
  try {
    if (!(await admin.listTopics()).includes(topic)) return [];
    const ends = new Map<number, bigint>();
    for (const p of await admin.fetchTopicOffsets(topic)) {
      if (BigInt(p.high) > BigInt(p.low)) ends.set(p.partition, BigInt(p.high));
    }
    if (ends.size === 0) return [];
    const records: DlqRecord[] = [];
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
              for (const m of batch.messages as KafkaMessage[]) {
                if (end !== undefined && BigInt(m.offset) < end) {
                  records.push({
                    partition: batch.partition,
                    offset: m.offset,
                    key: m.key,
                    value: m.value,
                    headers: headerText(m.headers),
                  });
                }
              }
              // Transaction markers sit at offsets with no record: compare the batch's end, not the last record.
              if (end !== undefined && BigInt(batch.lastOffset()) + 1n >= end) ends.delete(batch.partition);
              if (ends.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      await consumer.disconnect();
    }
    await admin.deleteGroups([groupId]).catch(() => undefined);
    return records.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
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
 * The first DLQ record of each rejected record, and how many more there were. A batch is dead-lettered
 * before its offsets are committed, so one retried after a crash sends its rejects again; those copies
 * are one rejected record, counted and replayed once.
 */
export function distinctRejects(records: DlqRecord[]): { records: DlqRecord[]; repeats: number } {
  const seen = new Set<string>();
  const first = records.filter((r) => {
    const key = rejectedRecord(r);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return { records: first, repeats: records.length - first.length };
}

export interface DlqSummary {
  /** Rejected records (DLQ copies of one record count once). */
  total: number;
  /** DLQ records that repeat a rejected record already counted. */
  repeats: number;
  byReason: Record<string, number>;
  samples: Array<Record<string, string>>;
}

/** Counts of rejected records by reason (and stage) and the first `samplesPerReason` of each reason. */
export function summarise(all: DlqRecord[], samplesPerReason = 3): DlqSummary {
  const { records, repeats } = distinctRejects(all);
  const byReason: Record<string, number> = {};
  const samples: Array<Record<string, string>> = [];
  for (const r of records) {
    const reason = `${r.headers[DLQ_HEADER.stage] ?? '?'}/${r.headers[DLQ_HEADER.reason] ?? 'unknown'}`;
    byReason[reason] = (byReason[reason] ?? 0) + 1;
    if (byReason[reason] <= samplesPerReason) {
      samples.push({
        reason,
        dlq_position: `${r.partition}:${r.offset}`,
        event_id: r.headers[HEADER.eventId] ?? '',
        original: `${r.headers[DLQ_HEADER.originalTopic] ?? '?'}:${r.headers[DLQ_HEADER.originalPartition] ?? '?'}:${r.headers[DLQ_HEADER.originalOffset] ?? '?'}`,
        message: r.headers[DLQ_HEADER.message] ?? '',
        failed_at: r.headers[DLQ_HEADER.failedAt] ?? '',
      });
    }
  }
  return { total: records.length, repeats, byReason, samples };
}

export const REPLAYED_FROM_HEADER = 'conveyor.dlq.replayed_from';

export interface ReplayPlan {
  /** Records to re-publish, by original topic: each rejected record once. */
  byTopic: Map<string, DlqRecord[]>;
  /** Relay-stage records hold an outbox row, not a Kafka record: they are fixed at the outbox. */
  notReplayable: number;
}

export function planReplay(records: DlqRecord[], filter: { reasons?: string[]; topics?: string[] } = {}): ReplayPlan {
  const byTopic = new Map<string, DlqRecord[]>();
  let notReplayable = 0;
  const reasons = filter.reasons ?? [];
  const topics = filter.topics ?? [];
  for (const r of distinctRejects(records).records) {
    if (reasons.length > 0 && !reasons.includes(r.headers[DLQ_HEADER.reason] ?? '')) continue;
    const topic = r.headers[DLQ_HEADER.originalTopic];
    if (topics.length > 0 && !topics.includes(topic ?? '')) continue;
    if (r.headers[DLQ_HEADER.stage] !== 'sink' || !topic) {
      notReplayable += 1;
      continue;
    }
    const list = byTopic.get(topic) ?? [];
    list.push(r);
    byTopic.set(topic, list);
  }
  return { byTopic, notReplayable };
}

/**
 * Re-publishes planned records to their original topics with the original key, value and headers
 * (the DLQ's own headers removed, the DLQ position added). The event id travels in the value and the
 * headers, so the sink's dedupe makes a replay of a replay harmless.
 */
export async function replay(kafka: Kafka, plan: ReplayPlan): Promise<number> {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const dlqHeaders = new Set<string>(Object.values(DLQ_HEADER));
  let sent = 0;
  try {
    for (const [topic, records] of plan.byTopic) {
      await producer.send({
        topic,
        acks: -1,
        messages: records.map((r) => {
          const headers: Record<string, string> = { [REPLAYED_FROM_HEADER]: `${DLQ_TOPIC}:${r.partition}:${r.offset}` };
          for (const [name, value] of Object.entries(r.headers)) if (!dlqHeaders.has(name)) headers[name] = value;
          return { key: r.key, value: r.value, headers };
        }),
      });
      sent += records.length;
    }
  } finally {
    await producer.disconnect();
  }
  return sent;
}
