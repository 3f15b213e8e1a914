import { type LakeEvent, partitionValue, recordFileStem, utcDate, utcHour, utcIso } from './event.ts';

/** When a bronze file closes and the next one starts (all judged on record data, never the clock). */
export interface RotationPolicy {
  maxRecords: number;
  maxBytes: number;
  /** Record-time span: a file ends before a record ingested this long after the file's first one. */
  maxSpanMs: number;
}

export interface BronzeFile {
  key: string;
  /** UTF-8 JSON lines, built as bytes: no intermediate string of the whole file. */
  body: Buffer;
  records: number;
  firstOffset: string;
}

export function bronzeDir(event: LakeEvent): string {
  return [
    'bronze',
    `source=${partitionValue(event.source)}`,
    `event_type=${partitionValue(event.eventType)}`,
    `event_date=${utcDate(event.eventTime)}`,
    `ingest_date=${utcDate(event.ingestedAt)}`,
    `hour=${utcHour(event.ingestedAt)}`,
  ].join('/');
}

/** One JSON line; the payload text is embedded as is, so bronze keeps the bytes that were sent. */
export function bronzeLine(event: LakeEvent): string {
  return (
    `{"event_id":${JSON.stringify(event.eventId)},"source":${JSON.stringify(event.source)},` +
    `"event_type":${JSON.stringify(event.eventType)},"entity_key":${JSON.stringify(event.entityKey)},` +
    `"event_time":"${utcIso(event.eventTime)}","ingested_at":"${utcIso(event.ingestedAt)}",` +
    `"payload":${event.payload},"lineage":${JSON.stringify(event.lineage)},` +
    `"kafka":{"topic":${JSON.stringify(event.topic)},"partition":${event.partition},"offset":${event.offset}}}\n`
  );
}

/**
 * Splits events of one topic-partition (in offset order) into bronze files. A file's name is fixed by
 * its topic, partition and first offset, and its end only by the records and the policy, so
 * re-running the same records from the same committed offset yields the same files, byte for byte.
 */
export function bronzeFiles(events: LakeEvent[], policy: RotationPolicy): BronzeFile[] {
  const pending: Array<{ key: string; firstOffset: string; lines: string[]; bytes: number }> = [];
  const open = new Map<string, { file: (typeof pending)[number]; firstTime: number }>();
  for (const event of events) {
    const dir = bronzeDir(event);
    const line = bronzeLine(event);
    const bytes = Buffer.byteLength(line);
    let current = open.get(dir);
    if (
      current &&
      (current.file.lines.length >= policy.maxRecords ||
        current.file.bytes + bytes > policy.maxBytes ||
        event.ingestedAt - current.firstTime >= policy.maxSpanMs)
    ) {
      current = undefined;
    }
    if (!current) {
      const file = {
        key: `${dir}/${recordFileStem(event.topic, event.partition, event.offset)}.jsonl`,
        firstOffset: event.offset,
        lines: [],
        bytes: 0,
      };
      pending.push(file);
      current = { file, firstTime: event.ingestedAt };
      open.set(dir, current);
    }
    current.file.lines.push(line);
    current.file.bytes += bytes;
  }
  return pending.map(({ key, firstOffset, lines, bytes }) => {
    const body = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (const line of lines) at += body.write(line, at);
    return { key, body, records: lines.length, firstOffset };
  });
}
