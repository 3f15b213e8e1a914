import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { Pool } from '../../libs/db/index.ts';
import { BRONZE_MAX_LINE_BYTES, sqlString } from '../../libs/lake/silver.ts';
import type { LakeStorage } from '../../libs/lake/storage.ts';

/** What `verify` found in one layer of the output, against the accepted events. */
export interface LayerReport {
  layer: 'bronze' | 'silver';
  accepted: number;
  distinctInOutput: number;
  rowsInOutput: number;
  missing: number;
  duplicated: number;
  extra: number;
  examples: { missing: string[]; duplicated: string[]; extra: string[] };
}

export interface VerifyOptions {
  sources?: string[];
  layers?: Array<'bronze' | 'silver'>;
  /** Told what verify is doing, a line at a time (the CLI prints it on stderr). */
  progress?: (line: string) => void;
  /** DuckDB's memory limit (default 512MB); beyond it, the counts spill to a scratch folder. */
  memoryLimit?: string;
}

const EXAMPLES = 5;
// 8 million events verified in 29 s at a 646 MB peak with 256MB, 30 s and 842 MB with 512MB (2 cores);
// 128MB was too little for the JSON reader's buffers. Twice what sufficed, for machines with more threads.
const DEFAULT_MEMORY = '512MB';
/** How often a long count says how far it has got. */
const PROGRESS_EVERY_MS = 5_000;
/** Ids are read from Postgres this many at a time. */
const FETCH_ROWS = 50_000;

const count = (n: number) => n.toLocaleString('en-US');

function sourceOf(key: string): string | undefined {
  const match = /(?:^|\/)source=([^/]+)\//.exec(key);
  return match ? decodeURIComponent(match[1]!) : undefined;
}

/**
 * Accepted events (raw_events), optionally of some sources only, into DuckDB's `accepted` table,
 * read through a cursor: verify's memory does not grow with the number of events.
 */
async function loadAccepted(pool: Pool, duck: DuckDBConnection, sources: string[], progress: (l: string) => void) {
  await duck.run('CREATE TABLE accepted (source VARCHAR NOT NULL, event_id VARCHAR NOT NULL)');
  const appender = await duck.createAppender('accepted');
  const client = await pool.connect();
  let rows = 0;
  try {
    // One snapshot for the whole read: events accepted meanwhile are not half counted.
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(
      `DECLARE accepted_ids NO SCROLL CURSOR FOR SELECT source, event_id FROM raw_events
       ${sources.length > 0 ? 'WHERE source = ANY($1::text[])' : ''}`,
      sources.length > 0 ? [sources] : [],
    );
    for (;;) {
      const { rows: batch } = await client.query<{ source: string; event_id: string }>(
        `FETCH ${FETCH_ROWS} FROM accepted_ids`,
      );
      for (const row of batch) {
        appender.appendVarchar(row.source);
        appender.appendVarchar(row.event_id);
        appender.endRow();
      }
      rows += batch.length;
      if (batch.length < FETCH_ROWS) break;
      if (rows % (FETCH_ROWS * 20) === 0) progress(`${count(rows)} accepted events read from Postgres so far`);
    }
    await client.query('COMMIT');
  } finally {
    client.release();
    appender.closeSync();
  }
  progress(`${count(rows)} accepted events read from Postgres`);
}

/** The bronze JSON line files of the sources asked for (all when none). */
async function bronzeFiles(storage: LakeStorage, sources: string[]): Promise<string[]> {
  return (await storage.list('bronze')).filter((key) => {
    if (!key.endsWith('.jsonl')) return false;
    const source = sourceOf(key);
    return sources.length === 0 || (source !== undefined && sources.includes(source));
  });
}

/** The silver event dataset files (silver/<source>/, not the entity datasets) of the sources asked for. */
async function silverFiles(storage: LakeStorage, sources: string[]): Promise<string[]> {
  return (await storage.list('silver')).filter((key) => {
    const dataset = key.split('/')[1] ?? '';
    if (!key.endsWith('.parquet') || dataset.endsWith('_latest')) return false;
    return sources.length === 0 || sources.includes(decodeURIComponent(dataset));
  });
}

/** How DuckDB reads a layer's files (a list of quoted paths) as rows with source and event_id. */
const READ_LAYER = {
  bronze: (paths: string) =>
    `read_json([${paths}], format = 'newline_delimited', columns = {source: 'VARCHAR', event_id: 'VARCHAR'},
       maximum_object_size = ${BRONZE_MAX_LINE_BYTES})`,
  silver: (paths: string) => `read_parquet([${paths}])`,
};

/**
 * The ids in a layer's files counted by source and event id into the table named after the layer, in
 * one statement; a line every few seconds says how far DuckDB has got.
 */
async function countLayer(
  duck: DuckDBConnection,
  storage: LakeStorage,
  layer: LayerReport['layer'],
  files: string[],
  progress: (line: string) => void,
): Promise<void> {
  const paths = files.map((k) => sqlString(localPathOf(storage, k))).join(', ');
  const rows =
    files.length === 0
      ? 'SELECT NULL::VARCHAR AS source, NULL::VARCHAR AS event_id WHERE false'
      : `SELECT source, event_id FROM ${READ_LAYER[layer](paths)}`;
  progress(`${layer}: reading ${count(files.length)} files`);
  const ticker = setInterval(() => {
    const { percentage } = duck.progress;
    if (percentage >= 0) progress(`${layer}: ${Math.floor(percentage)}% read`);
  }, PROGRESS_EVERY_MS);
  try {
    await duck.run(`CREATE TABLE ${layer} AS SELECT source, event_id, count(*) AS n FROM (${rows}) GROUP BY ALL`);
  } catch (error) {
    throw new Error(`${layer}: ${(error as Error).message}`);
  } finally {
    clearInterval(ticker);
  }
}

function localPathOf(storage: LakeStorage, key: string): string {
  const local = storage.localPath(key);
  if (!local) throw new Error(`verify reads local files; ${key} has no local path`);
  return local;
}

async function numberOf(duck: DuckDBConnection, sql: string): Promise<number> {
  const result = await duck.runAndReadAll(sql);
  return Number(result.getRowsJS()[0]?.[0] ?? 0);
}

/**
 * The first ids of a set, "source/event_id", shorter ids first within a source: so "x-2" comes
 * before "x-10", and a report reads the same on every run.
 */
async function examplesOf(duck: DuckDBConnection, select: string): Promise<string[]> {
  const result = await duck.runAndReadAll(
    `SELECT source || '/' || coalesce(event_id, 'null') FROM (${select})
     ORDER BY source, length(event_id), event_id LIMIT ${EXAMPLES}`,
  );
  return result.getRowsJS().map((row) => String(row[0]));
}

async function compare(duck: DuckDBConnection, layer: LayerReport['layer']): Promise<LayerReport> {
  const missing = `SELECT source, event_id FROM accepted a WHERE NOT EXISTS
    (SELECT 1 FROM ${layer} o WHERE o.source = a.source AND o.event_id = a.event_id)`;
  const duplicated = `SELECT source, event_id FROM ${layer} WHERE n > 1`;
  const extra = `SELECT source, event_id FROM ${layer} o WHERE NOT EXISTS
    (SELECT 1 FROM accepted a WHERE a.source = o.source AND a.event_id = o.event_id)`;
  return {
    layer,
    accepted: await numberOf(duck, 'SELECT count(*) FROM accepted'),
    distinctInOutput: await numberOf(duck, `SELECT count(*) FROM ${layer}`),
    rowsInOutput: await numberOf(duck, `SELECT coalesce(sum(n), 0) FROM ${layer}`),
    missing: await numberOf(duck, `SELECT count(*) FROM (${missing})`),
    duplicated: await numberOf(duck, `SELECT count(*) FROM (${duplicated})`),
    extra: await numberOf(duck, `SELECT count(*) FROM (${extra})`),
    examples: {
      missing: await examplesOf(duck, missing),
      duplicated: await examplesOf(duck, duplicated),
      extra: await examplesOf(duck, extra),
    },
  };
}

/**
 * Compares the accepted events with the event ids in each layer of the lake. The ids and counts live
 * in an in-process DuckDB that spills to a scratch folder past its memory limit, so a lake of any size
 * is verified in bounded memory (holding every id in JavaScript took 2.9 GB for 8 million events).
 */
export async function verifyOutput(
  pool: Pool,
  storage: LakeStorage,
  options: VerifyOptions = {},
): Promise<LayerReport[]> {
  const sources = options.sources ?? [];
  const layers = options.layers ?? ['bronze', 'silver'];
  const progress = options.progress ?? (() => undefined);
  const memoryLimit = options.memoryLimit ?? DEFAULT_MEMORY;
  // Everything from the scratch folder on is inside the try, so a failure anywhere (a memory limit
  // DuckDB refuses, say) leaves no folder behind.
  let scratch: string | undefined;
  let instance: DuckDBInstance | undefined;
  let duck: DuckDBConnection | undefined;
  try {
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-verify-'));
    // Loaded when used: DuckDB's library adds about 30 MB to any process that imports it.
    const { DuckDBInstance } = await import('@duckdb/node-api');
    try {
      instance = await DuckDBInstance.create(':memory:', {
        memory_limit: memoryLimit,
        temp_directory: scratch,
        preserve_insertion_order: 'false',
      });
    } catch (error) {
      if (!/Failed to set config/i.test((error as Error).message)) throw error;
      throw new Error(`DuckDB refused the memory limit "${memoryLimit}"; give a size such as 512MB or 2GB`);
    }
    duck = await instance.connect();
    // Tracked for the progress lines (duck.progress), never printed by DuckDB itself.
    await duck.run('SET enable_progress_bar = true; SET enable_progress_bar_print = false');
    await loadAccepted(pool, duck, sources, progress);
    const reports: LayerReport[] = [];
    for (const layer of layers) {
      const files = layer === 'bronze' ? await bronzeFiles(storage, sources) : await silverFiles(storage, sources);
      await countLayer(duck, storage, layer, files, progress);
      reports.push(await compare(duck, layer));
    }
    return reports;
  } catch (error) {
    if (!/Out of Memory/i.test((error as Error).message)) throw error;
    throw new Error(
      `${(error as Error).message}\nverify ran out of its memory limit (${memoryLimit}); give it more with --memory`,
    );
  } finally {
    duck?.closeSync();
    instance?.closeSync();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  }
}

export function isClean(reports: LayerReport[]): boolean {
  return reports.every((r) => r.missing === 0 && r.duplicated === 0 && r.extra === 0);
}
