import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Pool } from '../../libs/db/index.ts';
import { type DropOptions, type FileOutcome, ingestDrops } from '../../services/drops/ingest.ts';
import { LocalDirDropStorage } from '../../services/drops/storage.ts';
import { uniqueName } from '../helpers/real-stack.ts';

export function dropsDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), 'conveyor-drops-'));
}

export function dropSource(): string {
  return uniqueName('drops').toLowerCase();
}

/** One pass over `dir` in process, as `conveyor drops --once --settle 0` makes it. */
export function ingestOnce(
  pool: Pool,
  source: string,
  dir: string,
  options: Partial<DropOptions> = {},
): Promise<FileOutcome[]> {
  return ingestDrops({
    pool,
    source,
    storage: new LocalDirDropStorage(dir),
    format: 'auto',
    eventType: 'drop.record',
    settleMs: 0,
    ...options,
  });
}

export interface StoredEvent {
  event_id: string;
  entity_key: string;
  event_time: Date;
  payload: Record<string, unknown>;
  lineage: Record<string, string>;
}

export async function storedEvents(pool: Pool, source: string): Promise<StoredEvent[]> {
  const { rows } = await pool.query<StoredEvent>(
    `SELECT event_id, entity_key, event_time, payload, lineage FROM raw_events WHERE source = $1
     ORDER BY split_part(event_id, ':', 1), split_part(event_id, ':', 2)::int`,
    [source],
  );
  return rows;
}

/** raw_events rows, outbox rows and distinct event ids in the outbox, of one source. */
export async function counts(
  pool: Pool,
  source: string,
): Promise<{ events: number; outbox: number; distinct: number }> {
  const { rows } = await pool.query<{ events: number; outbox: number; distinct: number }>(
    `SELECT (SELECT count(*)::int FROM raw_events WHERE source = $1) AS events,
            (SELECT count(*)::int FROM outbox WHERE source = $1) AS outbox,
            (SELECT count(DISTINCT event_id)::int FROM outbox WHERE source = $1) AS distinct`,
    [source],
  );
  return rows[0]!;
}

export async function manifestRows(
  pool: Pool,
  source: string,
): Promise<Array<{ file_name: string; records: number; records_done: number; processed_at: Date | null }>> {
  const { rows } = await pool.query(
    'SELECT file_name, records, records_done, processed_at FROM drop_manifest WHERE source = $1 ORDER BY file_name',
    [source],
  );
  return rows;
}
