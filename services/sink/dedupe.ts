import type { Pool } from '../../libs/db/index.ts';
import type { LakeEvent } from '../../libs/lake/event.ts';

/**
 * Dedupe by event id, durable in Postgres (table sink_claims, one row per event id per source).
 *
 * The first Kafka record (topic, partition, offset) to reach the sink with an event id claims it; that
 * record is the event's one occurrence in the output. Any record with the same id at another position
 * (a relay re-publication, a DLQ replay) is a duplicate and is dropped, counted. A record that finds its
 * own claim (the sink crashed after claiming, or the topic is replayed from offset 0) is kept, and is
 * written again to the same deterministic file: a claim never hides its own record.
 */
export interface DedupeResult {
  kept: LakeEvent[];
  duplicates: LakeEvent[];
}

// Returns only the records that did not insert their claim (usually none): an inserted claim is the
// record's own, so there is nothing to send back or to look up for it.
const CLAIM_SQL = `
WITH input AS (
  SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS t(source, event_id, kafka_offset)
),
inserted AS (
  INSERT INTO sink_claims (source, event_id, topic, kafka_partition, kafka_offset)
  SELECT source, event_id, $4, $5, kafka_offset FROM input ORDER BY kafka_offset
  ON CONFLICT (source, event_id) DO NOTHING
  RETURNING source, event_id
)
SELECT i.source, i.event_id, c.topic, c.kafka_partition, c.kafka_offset::text AS claim_offset
FROM input i
LEFT JOIN sink_claims c USING (source, event_id)
WHERE NOT EXISTS (SELECT 1 FROM inserted ins WHERE ins.source = i.source AND ins.event_id = i.event_id)`;

// A claim committed by another sink while CLAIM_SQL ran is not in that statement's snapshot.
const LOOKUP_SQL = `
SELECT source, event_id, topic, kafka_partition, kafka_offset::text AS claim_offset
FROM sink_claims WHERE (source, event_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`;

interface ClaimRow {
  source: string;
  event_id: string;
  topic: string | null;
  kafka_partition: number | null;
  claim_offset: string | null;
}

const keyOf = (source: string, eventId: string) => `${source}\u0000${eventId}`;

/** Events of one topic-partition, in offset order. */
export async function claimEvents(pool: Pool, events: LakeEvent[]): Promise<DedupeResult> {
  const kept: LakeEvent[] = [];
  const duplicates: LakeEvent[] = [];
  if (events.length === 0) return { kept, duplicates };
  const { topic, partition } = events[0]!;

  // Within the batch the lowest offset is the only candidate; later copies are duplicates whatever
  // the table says.
  const firsts = new Map<string, LakeEvent>();
  for (const event of events) {
    const key = keyOf(event.source, event.eventId);
    if (firsts.has(key)) duplicates.push(event);
    else firsts.set(key, event);
  }
  // Map order is insertion order, so candidates (and kept) stay in offset order.
  const candidates = [...firsts.values()];
  const { rows } = await pool.query<ClaimRow>(CLAIM_SQL, [
    candidates.map((e) => e.source),
    candidates.map((e) => e.eventId),
    candidates.map((e) => e.offset),
    topic,
    partition,
  ]);
  if (rows.length === 0) return { kept: candidates, duplicates };
  // Claims found already there, whoever made them; every other candidate inserted its own.
  const owners = new Map<string, ClaimRow>();
  const unresolved: ClaimRow[] = [];
  for (const row of rows) {
    if (row.topic === null) unresolved.push(row);
    else owners.set(keyOf(row.source, row.event_id), row);
  }
  if (unresolved.length > 0) {
    const again = await pool.query<ClaimRow>(LOOKUP_SQL, [
      unresolved.map((r) => r.source),
      unresolved.map((r) => r.event_id),
    ]);
    for (const row of again.rows) owners.set(keyOf(row.source, row.event_id), row);
  }
  for (const row of unresolved) {
    if (!owners.has(keyOf(row.source, row.event_id))) {
      throw new Error(`dedupe: no claim found for event ${row.event_id} of ${row.source} after its insert conflicted`);
    }
  }
  for (const event of candidates) {
    const owner = owners.get(keyOf(event.source, event.eventId));
    const mine =
      owner === undefined ||
      (owner.topic === event.topic && owner.kafka_partition === event.partition && owner.claim_offset === event.offset);
    (mine ? kept : duplicates).push(event);
  }
  return { kept, duplicates };
}

/** Deletes claims older than the retention, a bounded batch at a time; returns how many went. */
export async function expireClaims(pool: Pool, retentionDays: number, batch = 10_000): Promise<number> {
  const { rowCount } = await pool.query(
    `DELETE FROM sink_claims WHERE ctid = ANY (ARRAY(
       SELECT ctid FROM sink_claims WHERE claimed_at < now() - make_interval(days => $1) LIMIT $2))`,
    [retentionDays, batch],
  );
  return rowCount ?? 0;
}
