import { DAY_MS, HOUR_MS, type LakeEvent, partitionValue, recordFileStem, utcDate, utcHour } from './event.ts';
import { ByteChunks, JsonLine, jsonStringBound } from './json-bytes.ts';

/** When a bronze file closes and the next one starts (all judged on record data, never the clock). */
export interface RotationPolicy {
  maxRecords: number;
  maxBytes: number;
  /** Record-time span: a file ends before a record ingested this long after the file's first one. */
  maxSpanMs: number;
}

export interface BronzeFile {
  key: string;
  /** UTF-8 JSON lines, in chunks (written as bytes: no string per line or per value). */
  chunks: Buffer[];
  bytes: number;
  records: number;
  firstOffset: string;
  /** The source of its records: entity merges take a source's bronze files together. */
  source: string;
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

// What comes before each value of a bronze line: field names and punctuation (see writeLine).
const BEFORE = {
  eventId: '{"event_id":',
  source: ',"source":',
  eventType: ',"event_type":',
  entityKey: ',"entity_key":',
  eventTime: ',"event_time":',
  ingestedAt: ',"ingested_at":',
  updatedAt: ',"updated_at":',
  payload: ',"payload":',
  lineage: ',"lineage":{',
  topic: '},"kafka":{"topic":',
  partition: ',"partition":',
  offset: ',"offset":',
  end: '}}\n',
} as const;
// The names and punctuation, three ISO times (26 bytes quoted), a partition and an offset.
const FIXED_BYTES = Object.values(BEFORE).reduce((sum, f) => sum + f.length, 0) + 3 * 26 + 11 + 20;

/** At most how many bytes writeLine writes for `event`. */
function lineBound(event: LakeEvent): number {
  let bound = FIXED_BYTES + jsonStringBound(event.eventId) + jsonStringBound(event.source);
  bound += jsonStringBound(event.eventType) + jsonStringBound(event.entityKey) + jsonStringBound(event.topic);
  bound += typeof event.payload === 'string' ? event.payload.length * 3 : event.payload.length;
  for (const key in event.lineage) bound += jsonStringBound(key) + jsonStringBound(event.lineage[key]!) + 2;
  return bound;
}

/**
 * One JSON line: the envelope, the payload text as is (bronze keeps the bytes that were sent), the
 * lineage and the Kafka position. updated_at is the version time the gate derived (payload.updated_at,
 * else event_time).
 */
function writeLine(line: JsonLine, chunks: ByteChunks, event: LakeEvent): void {
  line.start(chunks, lineBound(event));
  line.stringField(BEFORE.eventId, event.eventId);
  line.stringField(BEFORE.source, event.source);
  line.stringField(BEFORE.eventType, event.eventType);
  line.stringField(BEFORE.entityKey, event.entityKey);
  line.timeField(BEFORE.eventTime, event.eventTime);
  line.timeField(BEFORE.ingestedAt, event.ingestedAt);
  line.timeField(BEFORE.updatedAt, event.updatedAt);
  line.ascii(BEFORE.payload);
  if (typeof event.payload === 'string') line.utf8(event.payload);
  else line.raw(event.payload);
  line.ascii(BEFORE.lineage);
  let separator = '';
  for (const key in event.lineage) {
    line.stringField(separator, key);
    line.stringField(':', event.lineage[key]!);
    separator = ',';
  }
  line.stringField(BEFORE.topic, event.topic);
  line.ascii(BEFORE.partition);
  line.ascii(String(event.partition));
  line.ascii(BEFORE.offset);
  line.ascii(event.offset);
  line.ascii(BEFORE.end);
}

interface PendingFile extends Omit<BronzeFile, 'chunks' | 'bytes' | 'records'> {
  lines: ByteChunks;
  records: number;
  firstTime: number;
}

/** Records written and committed together: at most one file per folder. */
export interface BronzeUnit {
  files: BronzeFile[];
  /** How many of the input events the unit holds (they are the next ones in order). */
  events: number;
}

function finish(files: PendingFile[]): BronzeFile[] {
  return files.map(({ lines, firstTime: _, ...file }) => ({ ...file, chunks: lines.toChunks(), bytes: lines.length }));
}

interface UnitState {
  pending: PendingFile[];
  open: Map<string, PendingFile>;
  unitEvents: number;
}

/** Ends the unit being built (every folder's file) and starts an empty one. */
function endUnit(units: BronzeUnit[], pending: PendingFile[], unitEvents: number): UnitState {
  units.push({ files: finish(pending), events: unitEvents });
  return { pending: [], open: new Map(), unitEvents: 0 };
}

/** A new file in `dir`, named after `event`, its first record. */
function newFile(pending: PendingFile[], open: Map<string, PendingFile>, dir: string, event: LakeEvent): PendingFile {
  const stem = recordFileStem(event.topic, event.partition, event.offset);
  const file: PendingFile = {
    key: `${dir}/${stem}.jsonl`,
    firstOffset: event.offset,
    source: event.source,
    lines: new ByteChunks(),
    records: 0,
    firstTime: event.ingestedAt,
  };
  pending.push(file);
  open.set(dir, file);
  return file;
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
  const line = new JsonLine();
  for (const event of events) {
    const folderKey = `${event.source}\u0000${event.eventType}\u0000${Math.floor(event.eventTime / DAY_MS)}\u0000${Math.floor(event.ingestedAt / HOUR_MS)}`;
    let dir = dirs.get(folderKey);
    if (dir === undefined) {
      dir = bronzeDir(event);
      dirs.set(folderKey, dir);
    }
    let current = open.get(dir);
    if (current && (current.records >= policy.maxRecords || event.ingestedAt - current.firstTime >= policy.maxSpanMs)) {
      current = undefined;
      ({ pending, open, unitEvents } = endUnit(units, pending, unitEvents));
    }
    current ??= newFile(pending, open, dir, event);
    // The line goes straight into its file's chunk; if it makes the file too large, the unit ends
    // there and the line moves to the next unit's file (a copy, once per rotation).
    writeLine(line, current.lines, event);
    if (current.records > 0 && current.lines.length + line.length > policy.maxBytes) {
      ({ pending, open, unitEvents } = endUnit(units, pending, unitEvents));
      const moved = line.bytes();
      current = newFile(pending, open, dir, event);
      current.lines.append(moved);
    } else {
      current.lines.commit(line.length);
    }
    current.records += 1;
    unitEvents += 1;
  }
  if (pending.length > 0) units.push({ files: finish(pending), events: unitEvents });
  return units;
}
