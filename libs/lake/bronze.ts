import { DAY_MS, HOUR_MS, type LakeEvent, partitionValue, recordFileStem, utcDate, utcHour, utcIso } from './event.ts';

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
  /** What the silver writer groups by: a silver file holds the bronze files of one source and date. */
  source: string;
  eventDate: string;
  /** recordFileStem of the first record: silver names its file after the first bronze file's. */
  stem: string;
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

/**
 * A JSON line is written as three pieces: the envelope up to `"payload":`, the payload text as is (so
 * bronze keeps the bytes that were sent), and the rest. Never joining them into one string saved a
 * copy of every payload (and the garbage) per record. updated_at is the version time the gate derived
 * (payload.updated_at, else event_time).
 */
function lineHead(event: LakeEvent): string {
  return (
    `{"event_id":${JSON.stringify(event.eventId)},"source":${JSON.stringify(event.source)},` +
    `"event_type":${JSON.stringify(event.eventType)},"entity_key":${JSON.stringify(event.entityKey)},` +
    `"event_time":"${utcIso(event.eventTime)}","ingested_at":"${utcIso(event.ingestedAt)}",` +
    `"updated_at":"${utcIso(event.updatedAt)}","payload":`
  );
}

function lineTail(event: LakeEvent, kafkaPrefix: string): string {
  return `,"lineage":${JSON.stringify(event.lineage)},${kafkaPrefix}${event.offset}}}\n`;
}

function kafkaPrefixOf(event: LakeEvent): string {
  return `"kafka":{"topic":${JSON.stringify(event.topic)},"partition":${event.partition},"offset":`;
}

interface PendingFile extends Omit<BronzeFile, 'body' | 'records'> {
  /** head, payload, tail of each line in turn. */
  pieces: string[];
  records: number;
  bytes: number;
  firstTime: number;
}

/** Records written and committed together: at most one file per folder. */
export interface BronzeUnit {
  files: BronzeFile[];
  /** How many of the input events the unit holds (they are the next ones in order). */
  events: number;
}

function finish(files: PendingFile[]): BronzeFile[] {
  return files.map(({ pieces, bytes, firstTime: _, ...file }) => {
    const body = Buffer.allocUnsafe(bytes);
    let at = 0;
    for (const piece of pieces) at += body.write(piece, at);
    return { ...file, body };
  });
}

/**
 * Splits events of one topic-partition (in offset order) into commit units of bronze files. A file is
 * named by its topic, partition and first offset. Where the policy ends a file, the whole unit ends
 * (every folder's file) and the next starts with that record: so each unit holds one file per folder,
 * and after a crash, a replay from the committed offset names every folder's first file exactly as
 * the lost attempt did and replaces it, whatever size its batches have. (Ending only the one folder's
 * file inside a batch left the lost attempt's later file behind when the replay's batches were cut
 * elsewhere: its records were then in two files.)
 */
export function bronzeUnits(events: LakeEvent[], policy: RotationPolicy): BronzeUnit[] {
  const units: BronzeUnit[] = [];
  let pending: PendingFile[] = [];
  let open = new Map<string, PendingFile>();
  let unitEvents = 0;
  // A batch has few folders: the folder of a (source, type, day, ingest hour) is worked out once.
  const dirs = new Map<string, string>();
  let kafkaPrefix = '';
  let prefixOf = '';
  for (const event of events) {
    const folderKey = `${event.source}\u0000${event.eventType}\u0000${Math.floor(event.eventTime / DAY_MS)}\u0000${Math.floor(event.ingestedAt / HOUR_MS)}`;
    let dir = dirs.get(folderKey);
    if (dir === undefined) {
      dir = bronzeDir(event);
      dirs.set(folderKey, dir);
    }
    const positionKey = `${event.topic}+${event.partition}`;
    if (positionKey !== prefixOf) {
      kafkaPrefix = kafkaPrefixOf(event);
      prefixOf = positionKey;
    }
    const head = lineHead(event);
    const tail = lineTail(event, kafkaPrefix);
    const bytes = Buffer.byteLength(head) + Buffer.byteLength(event.payload) + Buffer.byteLength(tail);
    let current = open.get(dir);
    if (
      current &&
      (current.records >= policy.maxRecords ||
        current.bytes + bytes > policy.maxBytes ||
        event.ingestedAt - current.firstTime >= policy.maxSpanMs)
    ) {
      units.push({ files: finish(pending), events: unitEvents });
      pending = [];
      open = new Map();
      unitEvents = 0;
      current = undefined;
    }
    if (!current) {
      const stem = recordFileStem(event.topic, event.partition, event.offset);
      current = {
        key: `${dir}/${stem}.jsonl`,
        firstOffset: event.offset,
        source: event.source,
        eventDate: utcDate(event.eventTime),
        stem,
        pieces: [],
        records: 0,
        bytes: 0,
        firstTime: event.ingestedAt,
      };
      pending.push(current);
      open.set(dir, current);
    }
    current.pieces.push(head, event.payload, tail);
    current.records += 1;
    current.bytes += bytes;
    unitEvents += 1;
  }
  if (pending.length > 0) units.push({ files: finish(pending), events: unitEvents });
  return units;
}
