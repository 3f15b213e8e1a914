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
  /** The payload as JSON text (an object), kept byte-for-byte as it was decoded. */
  payload: string;
  lineage: Record<string, string>;
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (offsets are 64-bit). */
  offset: string;
}

/** YYYY-MM-DD in UTC. */
export function utcDate(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** HH (00-23) in UTC. */
export function utcHour(ms: number): string {
  return new Date(ms).toISOString().slice(11, 13);
}

/** Hive-style partition value: safe in a path segment, readable, reversible (percent-encoding). */
export function partitionValue(value: string): string {
  return encodeURIComponent(value).replace(/\./g, '%2E');
}

/** A file name that sorts by offset and is the same on every replay of the same records. */
export function recordFileStem(topic: string, partition: number, firstOffset: string): string {
  return `${topic}+${partition}+${firstOffset.padStart(20, '0')}`;
}
