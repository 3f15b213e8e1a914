import { createHash } from 'node:crypto';
import { type Pool, withTransaction } from '../../libs/db/index.ts';
import { appendEvents, checkEvents, type NewEvent, OutboxInputError, parseTime } from '../../libs/outbox/index.ts';
import { type DropFormat, DropFormatError, formatOf, type ParsedRecord, parseRecords } from './formats.ts';
import type { DropFileStat, DropStorage } from './storage.ts';

export const DEFAULT_CHUNK_RECORDS = 5000;

export interface DropOptions {
  pool: Pool;
  source: string;
  storage: DropStorage;
  /** 'auto': from the extension; files with another extension are left alone. */
  format: DropFormat | 'auto';
  /** Column whose value is the entity key (Kafka key); without it, the file's name is. */
  keyColumn?: string;
  eventType: string;
  /** Column holding the event time (ISO 8601, or epoch seconds / milliseconds); else the file's mtime. */
  timeColumn?: string;
  /** Records per transaction. */
  chunkRecords?: number;
  /** Time between the two looks at a file's size and mtime; a file that changed between them is not read. */
  settleMs: number;
  /**
   * Files this process is done with (ingested, skipped or refused), by name, with their size and mtime
   * then: unchanged, they are not read (or reported) again. For passes that repeat (--watch).
   */
  done?: Map<string, string>;
  onFile?: (outcome: FileOutcome) => void;
  /** Stops the pass before its next file or chunk; what is committed stays, and a rerun resumes. */
  signal?: AbortSignal;
}

export type FileOutcome =
  | {
      file: string;
      status: 'ingested';
      sha256: string;
      records: number;
      accepted: number;
      duplicates: number;
      /** Records an earlier, interrupted run had committed; this run started after them. */
      resumedAfter: number;
    }
  | { file: string; status: 'already-processed'; sha256: string; firstName: string; processedAt: Date }
  | { file: string; status: 'refused'; error: string }
  | { file: string; status: 'interrupted'; records: number; recordsDone: number }
  | { file: string; status: 'unsettled' }
  | { file: string; status: 'unknown-format' };

/** A file that cannot be taken in as it is; nothing of it has been written. */
export class DropRefusedError extends Error {
  constructor(file: string, where: string | undefined, problem: string) {
    super(`${file}: ${where ? `${where}: ` : ''}${problem}; nothing of it was written`);
    this.name = 'DropRefusedError';
  }
}

interface ManifestRow {
  file_name: string;
  file_mtime: Date;
  records: number;
  records_done: number;
  processed_at: Date | null;
}

function where(record?: number, line?: number): string | undefined {
  if (line !== undefined && record !== undefined) return `line ${line} (record ${record})`;
  if (line !== undefined) return `line ${line}`;
  return record !== undefined ? `record ${record}` : undefined;
}

/** As parseTime, and epoch digits as text too: every CSV value is text. */
export function parseEventTime(value: unknown): Date | undefined {
  return parseTime(typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : value);
}

/** What identifies a file's content: the manifest's key and the first part of each event id. */
function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * The events of a file, in file order. Event id `<sha256>:<n>` (n the 1-based record number): the
 * same bytes give the same ids whatever the file is called, and a corrected file (new bytes) new ones.
 */
function toEvents(
  options: DropOptions,
  file: { name: string; sha256: string; mtime: Date },
  records: readonly ParsedRecord[],
): NewEvent[] {
  const events = records.map(({ value, line }, index): NewEvent => {
    const n = index + 1;
    let entityKey = file.name;
    if (options.keyColumn !== undefined) {
      const key = value[options.keyColumn];
      if ((typeof key !== 'string' && typeof key !== 'number') || key === '') {
        throw new DropRefusedError(
          file.name,
          where(n, line),
          `key column "${options.keyColumn}" is missing or empty (got ${JSON.stringify(key) ?? 'nothing'})`,
        );
      }
      entityKey = String(key);
    }
    let eventTime = file.mtime;
    if (options.timeColumn !== undefined) {
      const raw = value[options.timeColumn];
      const parsed = parseEventTime(raw);
      if (!parsed) {
        throw new DropRefusedError(
          file.name,
          where(n, line),
          `time column "${options.timeColumn}" is not an ISO 8601 time or epoch (got ${JSON.stringify(raw) ?? 'nothing'})`,
        );
      }
      eventTime = parsed;
    }
    return {
      source: options.source,
      eventId: `${file.sha256}:${n}`,
      eventType: options.eventType,
      entityKey,
      eventTime,
      payload: value,
      lineage: { location: options.storage.location, file: file.name, sha256: file.sha256, record: String(n) },
    };
  });
  try {
    checkEvents(events);
  } catch (error) {
    if (!(error instanceof OutboxInputError)) throw error;
    throw new DropRefusedError(
      file.name,
      where(error.index + 1, records[error.index]?.line),
      `${error.field}: ${error.message.replace(/^event\[\d+\]\.\w+: /, '')}`,
    );
  }
  return events;
}

/**
 * Commits records [from, to) with the manifest's progress, in one transaction. Returns the progress
 * another process had already made when it is not `from` (then nothing was written).
 */
async function commitChunk(
  options: DropOptions,
  manifest: { sha256: string; name: string; size: number; format: DropFormat; mtime: Date; records: number },
  events: readonly NewEvent[],
  from: number,
  to: number,
): Promise<{ accepted: number; duplicates: number } | { movedTo: number }> {
  return withTransaction(options.pool, async (client) => {
    await client.query(
      `INSERT INTO drop_manifest (source, sha256, file_name, size_bytes, format, file_mtime, records)
       VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, sha256) DO NOTHING`,
      [
        options.source,
        manifest.sha256,
        manifest.name,
        manifest.size,
        manifest.format,
        manifest.mtime.toISOString(),
        manifest.records,
      ],
    );
    // Locked: two processes on one folder take turns per chunk, and neither writes a chunk twice.
    const { rows } = await client.query<{ records_done: number }>(
      'SELECT records_done FROM drop_manifest WHERE source = $1 AND sha256 = $2 FOR UPDATE',
      [options.source, manifest.sha256],
    );
    const done = rows[0]!.records_done;
    if (done !== from) return { movedTo: done };
    const results = await appendEvents(client, events.slice(from, to));
    await client.query(
      `UPDATE drop_manifest SET records_done = $3,
         processed_at = CASE WHEN $3 = records THEN clock_timestamp() END
       WHERE source = $1 AND sha256 = $2`,
      [options.source, manifest.sha256, to],
    );
    const accepted = results.filter((r) => r.status === 'ACCEPTED').length;
    return { accepted, duplicates: results.length - accepted };
  });
}

async function ingestFile(
  options: DropOptions,
  name: string,
  format: DropFormat,
  stat: DropFileStat,
): Promise<FileOutcome> {
  const bytes = await options.storage.read(name);
  // Grew or shrank since it was looked at: still being written after all.
  if (bytes.length !== stat.size) return { file: name, status: 'unsettled' };
  const sha256 = sha256Of(bytes);
  const { rows } = await options.pool.query<ManifestRow>(
    `SELECT file_name, file_mtime, records, records_done, processed_at FROM drop_manifest
     WHERE source = $1 AND sha256 = $2`,
    [options.source, sha256],
  );
  const known = rows[0];
  if (known?.processed_at) {
    return {
      file: name,
      status: 'already-processed',
      sha256,
      firstName: known.file_name,
      processedAt: known.processed_at,
    };
  }
  let records: ParsedRecord[];
  try {
    records = await parseRecords(format, bytes);
  } catch (error) {
    if (!(error instanceof DropFormatError)) throw error;
    throw new DropRefusedError(name, where(error.record, error.line), error.problem);
  }
  // A file part-way in is finished as it was begun: same name and time, so its events are the same.
  const file = known
    ? { name: known.file_name, sha256, mtime: known.file_mtime }
    : { name, sha256, mtime: new Date(Math.floor(stat.mtimeMs)) };
  const events = toEvents(options, file, records);
  if (known && known.records !== events.length) {
    throw new DropRefusedError(
      name,
      undefined,
      `a run begun on this content read ${known.records} record(s), this one ${events.length} (another --format?)`,
    );
  }
  const manifest = { ...file, size: bytes.length, format, records: events.length };
  const chunk = options.chunkRecords ?? DEFAULT_CHUNK_RECORDS;
  const resumedAfter = known?.records_done ?? 0;
  let accepted = 0;
  let duplicates = 0;
  let from = resumedAfter;
  do {
    if (options.signal?.aborted)
      return { file: name, status: 'interrupted', records: events.length, recordsDone: from };
    const to = Math.min(from + chunk, events.length);
    const committed = await commitChunk(options, manifest, events, from, to);
    if ('movedTo' in committed) {
      from = committed.movedTo;
      continue;
    }
    accepted += committed.accepted;
    duplicates += committed.duplicates;
    from = to;
  } while (from < events.length);
  return { file: name, status: 'ingested', sha256, records: events.length, accepted, duplicates, resumedAfter };
}

function fingerprint(stat: DropFileStat): string {
  return `${stat.size}:${stat.mtimeMs}`;
}

/**
 * One pass over the drop location: every file whose size and mtime did not change between two looks
 * `settleMs` apart is read, in name order. A bad file is refused (nothing written) and the others go
 * on. Returns each file's outcome.
 */
export async function ingestDrops(options: DropOptions): Promise<FileOutcome[]> {
  const { storage } = options;
  const outcomes: FileOutcome[] = [];
  const report = (outcome: FileOutcome) => {
    outcomes.push(outcome);
    options.onFile?.(outcome);
  };
  // Looked at in name order, twice, `settleMs` apart; reported in name order too.
  const looked: Array<{ name: string; format?: DropFormat; first?: DropFileStat }> = [];
  for (const name of await storage.list()) {
    const format = options.format === 'auto' ? formatOf(name) : options.format;
    const first = format ? await storage.stat(name) : undefined;
    if (format && (!first || options.done?.get(name) === fingerprint(first))) continue;
    looked.push({ name, format, first });
  }
  if (looked.some((file) => file.first) && options.settleMs > 0) {
    await new Promise((resolve) => setTimeout(resolve, options.settleMs));
  }
  for (const { name, format, first } of looked) {
    if (options.signal?.aborted) break;
    if (!format || !first) {
      report({ file: name, status: 'unknown-format' });
      continue;
    }
    const second = await storage.stat(name);
    if (!second) continue;
    if (fingerprint(second) !== fingerprint(first)) {
      report({ file: name, status: 'unsettled' });
      continue;
    }
    let outcome: FileOutcome;
    try {
      outcome = await ingestFile(options, name, format, second);
    } catch (error) {
      if (!(error instanceof DropRefusedError)) throw error;
      outcome = { file: name, status: 'refused', error: error.message };
    }
    if (outcome.status !== 'unsettled' && outcome.status !== 'interrupted')
      options.done?.set(name, fingerprint(second));
    report(outcome);
  }
  return outcomes;
}
