/** One decoded, checked event with the Kafka record that carried it: what the lake writers store. */
export interface LakeEvent {
  eventId: string;
  source: string;
  eventType: string;
  entityKey: string;
  /** Epoch milliseconds. */
  eventTime: number;
  ingestedAt: number;
  /** The version time for entity merges: payload.updated_at when present, else eventTime. */
  updatedAt: number;
  /** The payload as JSON text (an object): its UTF-8 bytes as decoded, or a string; kept as is. */
  payload: Buffer | string;
  lineage: Record<string, string>;
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (offsets are 64-bit). */
  offset: string;
}

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;
// Formatting a Date per field per event was a visible share of the sink's CPU; records of a batch
// share a few days, so the day's text is computed once. Bounded: cleared when it grows.
const dayText = new Map<number, string>();

/** YYYY-MM-DD in UTC. */
export function utcDate(ms: number): string {
  const day = Math.floor(ms / DAY_MS);
  let text = dayText.get(day);
  if (text === undefined) {
    text = new Date(day * DAY_MS).toISOString().slice(0, 10);
    if (dayText.size >= 4096) dayText.clear();
    dayText.set(day, text);
  }
  return text;
}

const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));

/** Milliseconds since the UTC midnight of `ms`. */
export function msOfDay(ms: number): number {
  return ms - Math.floor(ms / DAY_MS) * DAY_MS;
}

/** HH (00-23) in UTC. */
export function utcHour(ms: number): string {
  return pad2(Math.floor(msOfDay(ms) / HOUR_MS));
}

// Sources and event types repeat on every record; encoding them once each is enough.
const encoded = new Map<string, string>();

/** Hive-style partition value: safe in a path segment, readable, reversible (percent-encoding). */
export function partitionValue(value: string): string {
  let text = encoded.get(value);
  if (text === undefined) {
    text = encodeURIComponent(value).replace(/\./g, '%2E');
    if (encoded.size >= 4096) encoded.clear();
    encoded.set(value, text);
  }
  return text;
}

/** A file name that sorts by offset and is the same on every replay of the same records. */
export function recordFileStem(topic: string, partition: number, firstOffset: string): string {
  return `${topic}+${partition}+${firstOffset.padStart(20, '0')}`;
}

/**
 * The first offset in a file name made from recordFileStem (bronze `<stem>.jsonl`, silver
 * `part-<stem>.parquet`) when the file belongs to that topic-partition; otherwise undefined.
 */
export function firstOffsetInName(name: string, topic: string, partition: number): bigint | undefined {
  const stem = `${topic}+${partition}+`;
  const at = name.lastIndexOf(stem);
  if (at === -1) return undefined;
  const digits = name.slice(at + stem.length, at + stem.length + 20);
  return /^\d{20}$/.test(digits) ? BigInt(digits) : undefined;
}
