import type { DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { ByteWriter, parquetWrite } from 'hyparquet-writer';
import type { BronzeFile } from './bronze.ts';
import { type LakeEvent, partitionValue, recordFileStem, utcDate } from './event.ts';
import type { LakeStorage } from './storage.ts';

/**
 * Silver output: Parquet under silver/<dataset>/date=YYYY-MM-DD/.
 *
 * - Event datasets (silver/<source>/): one row per distinct event, encoded by hyparquet-writer from
 *   the batch's checked events, already in memory. Files are named like bronze's (topic, partition,
 *   first offset), so a replay rewrites the same files. `payload` holds the bytes as sent, as bronze
 *   does. DuckDB made these from the bronze files before: parsing each JSON line again cost the sink
 *   a fifth of its CPU and about 45 MB of memory (measured, bench:sink), and loading DuckDB another
 *   30 MB when no entity dataset needs it.
 * - Entity datasets (silver/<source>_latest/): one row per entity key, the version with the latest
 *   updated_at (ties: the greater event_id). A merge rewrites every affected date partition as one
 *   part-0.parquet, published atomically (the partition-overwrite pattern). DuckDB does the merge
 *   (it reads the durable bronze files and the current partitions); it is loaded at the first merge.
 *   Its `payload` is DuckDB's JSON text: the same JSON value, minified.
 *
 * Both write the same columns with the same Parquet types (EVENT_SCHEMA, which is what DuckDB writes
 * for them), so one reader reads every silver file alike.
 */

/** How DuckDB reads a bronze line (libs/lake/bronze.ts writes them). */
const BRONZE_COLUMNS = `{event_id: 'VARCHAR', source: 'VARCHAR', event_type: 'VARCHAR', entity_key: 'VARCHAR',
  event_time: 'TIMESTAMP', ingested_at: 'TIMESTAMP', updated_at: 'TIMESTAMP', payload: 'JSON',
  kafka: 'STRUCT(topic VARCHAR, "partition" INTEGER, "offset" BIGINT)'}`;

// DuckDB's JSON reader buffers twice this much per file; its 16 MiB default then needs a 32 MiB buffer.
// A bronze line is one Kafka record (the relay keeps those under 1 MiB) plus a small envelope.
export const BRONZE_MAX_LINE_BYTES = 4 * 1024 * 1024;

/** The stored row: timestamps as TIMESTAMP (UTC), the partition date only in the path. */
const COLUMN_NAMES = `event_id, source, event_type, entity_key, event_time, ingested_at, updated_at, payload,
  kafka_topic, kafka_partition, kafka_offset`;

// Snappy: read by every Parquet reader (hyparquet, Spark, Athena) without optional codecs.
const PARQUET = '(FORMAT parquet, COMPRESSION snappy)';

const text = (name: string) =>
  ({ name, type: 'BYTE_ARRAY', repetition_type: 'OPTIONAL', converted_type: 'UTF8' }) as const;
const timestamp = (name: string) =>
  ({
    name,
    type: 'INT64',
    repetition_type: 'OPTIONAL',
    converted_type: 'TIMESTAMP_MICROS',
    logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: false, unit: 'MICROS' },
  }) as const;
/** The Parquet schema of a silver row (COLUMN_NAMES), element for element what DuckDB writes for it. */
const EVENT_SCHEMA = [
  { name: 'duckdb_schema', repetition_type: 'REQUIRED', num_children: 11 },
  text('event_id'),
  text('source'),
  text('event_type'),
  text('entity_key'),
  timestamp('event_time'),
  timestamp('ingested_at'),
  timestamp('updated_at'),
  text('payload'),
  text('kafka_topic'),
  { name: 'kafka_partition', type: 'INT32', repetition_type: 'OPTIONAL', converted_type: 'INT_32' },
  { name: 'kafka_offset', type: 'INT64', repetition_type: 'OPTIONAL', converted_type: 'INT_64' },
] as const;

const micros = (ms: number) => BigInt(ms) * 1000n;

/** One silver event file: the rows of `events` (one source and event date), in offset order. */
export function encodeEvents(events: readonly LakeEvent[]): Uint8Array {
  const column = <T>(value: (e: LakeEvent) => T) => events.map(value);
  const writer = new ByteWriter(1 << 20);
  const written = parquetWrite({
    writer,
    schema: EVENT_SCHEMA as unknown as Parameters<typeof parquetWrite>[0]['schema'],
    columnData: [
      // PLAIN: a file's event ids are distinct (one row per event), so the dictionary hyparquet-writer
      // would build to try is always thrown away (5-10% of a file's encoding, measured).
      { name: 'event_id', data: column((e) => e.eventId), encoding: 'PLAIN' },
      { name: 'source', data: column((e) => e.source) },
      { name: 'event_type', data: column((e) => e.eventType) },
      { name: 'entity_key', data: column((e) => e.entityKey) },
      { name: 'event_time', data: column((e) => micros(e.eventTime)) },
      { name: 'ingested_at', data: column((e) => micros(e.ingestedAt)) },
      { name: 'updated_at', data: column((e) => micros(e.updatedAt)) },
      // Buffers are written as they are; a string (a typed payload serialised) is encoded.
      // No min/max for payloads: no reader prunes by them, and they cost a tenth of the encoding.
      { name: 'payload', data: column((e) => e.payload), encoding: 'PLAIN', statistics: false },
      { name: 'kafka_topic', data: column((e) => e.topic) },
      { name: 'kafka_partition', data: Int32Array.from(events, (e) => e.partition) },
      // BigInts made once: from a BigInt64Array the writer would get a new one at every read.
      { name: 'kafka_offset', data: column((e) => BigInt(e.offset)) },
    ],
    // hyparquet-writer's own Snappy: its output depends on the input alone, so a replay writes the
    // same bytes. (hysnappy's WebAssembly one, a third faster, kept state between calls: a replayed
    // file came out two bytes different.)
    codec: 'SNAPPY',
    // One row group per file, as DuckDB writes a file this size.
    rowGroupSize: Math.max(1, events.length),
    createdBy: 'conveyor (hyparquet-writer)',
  });
  if (written) throw new Error('hyparquet-writer wrote asynchronously; the silver writer expects it not to');
  return writer.getBytes();
}

export function eventDataset(source: string): string {
  return partitionValue(source);
}

export function entityDataset(source: string): string {
  return `${partitionValue(source)}_latest`;
}

/** A SQL string literal (DuckDB), for paths and names put into statements. */
export function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export interface SilverWrite {
  /** Keys of the files written. */
  keys: string[];
  bytes: number;
}

export class SilverWriter {
  private tail: Promise<unknown> = Promise.resolve();
  private duck: Promise<{ instance: DuckDBInstance; db: DuckDBConnection }> | undefined;

  private constructor(
    private readonly storage: LakeStorage,
    private readonly memoryLimit: string,
  ) {}

  static async create(storage: LakeStorage, options: { memoryLimit?: string } = {}): Promise<SilverWriter> {
    return new SilverWriter(storage, options.memoryLimit ?? '128MB');
  }

  /** One in-process DuckDB for merges, made at the first: a single thread and a memory cap. */
  private connection(): Promise<DuckDBConnection> {
    this.duck ??= (async () => {
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const instance = await DuckDBInstance.create(':memory:', {
        threads: '1',
        memory_limit: this.memoryLimit,
        preserve_insertion_order: 'false',
      });
      return { instance, db: await instance.connect() };
    })();
    return this.duck.then(({ db }) => db);
  }

  /** DuckDB work runs one operation at a time on the one connection. */
  private serial<T>(work: () => Promise<T>): Promise<T> {
    const run = this.tail.then(work, work);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /** The rows of durable bronze files, as silver columns. */
  private bronzeRows(files: BronzeFile[]): string {
    const paths = files.map((f) => sqlString(this.localPathOf(f.key)));
    return `SELECT event_id, source, event_type, entity_key, event_time, ingested_at, updated_at,
        payload::VARCHAR AS payload, kafka.topic AS kafka_topic, kafka.partition AS kafka_partition, kafka.offset AS kafka_offset
      FROM read_json([${paths.join(', ')}], format = 'newline_delimited', columns = ${BRONZE_COLUMNS},
        maximum_object_size = ${BRONZE_MAX_LINE_BYTES})`;
  }

  private async copyTo(db: DuckDBConnection, key: string, select: string): Promise<number> {
    return this.storage.putFrom(key, async (scratch) => {
      await db.run(`COPY (${select}) TO ${sqlString(scratch)} ${PARQUET}`);
    });
  }

  /**
   * The events of one commit unit of a topic-partition (deduped, in offset order) into their date
   * partitions: one silver file per source and event date, named after its first record, durable
   * when this resolves.
   */
  async writeEvents(events: readonly LakeEvent[]): Promise<SilverWrite> {
    const groups = new Map<string, LakeEvent[]>();
    for (const e of events) {
      const key = `${e.source}\u0000${utcDate(e.eventTime)}`;
      const group = groups.get(key);
      if (group) group.push(e);
      else groups.set(key, [e]);
    }
    let bytes = 0;
    const keys: string[] = [];
    for (const group of groups.values()) {
      const first = group[0]!;
      const stem = recordFileStem(first.topic, first.partition, first.offset);
      const key = `silver/${eventDataset(first.source)}/date=${utcDate(first.eventTime)}/part-${stem}.parquet`;
      const file = encodeEvents(group);
      await this.storage.put(key, Buffer.from(file.buffer, file.byteOffset, file.byteLength));
      bytes += file.byteLength;
      keys.push(key);
    }
    return { keys, bytes };
  }

  /**
   * Merges the versions in one source's bronze files into silver/<source>_latest/. The caller holds
   * the dataset's lock (several sinks may merge into one dataset). Existing rows of the incoming keys
   * are found in every date partition, because a newer version may move an entity to another date.
   */
  mergeEntities(source: string, files: BronzeFile[]): Promise<SilverWrite> {
    return this.serial(async () => {
      if (files.length === 0) return { keys: [], bytes: 0 };
      const db = await this.connection();
      const dataset = `silver/${entityDataset(source)}`;
      const current = (await this.storage.list(dataset)).filter((k) => k.endsWith('.parquet'));
      await db.run(`CREATE OR REPLACE TABLE incoming AS
        SELECT ${COLUMN_NAMES}, strftime(event_time, '%Y-%m-%d') AS date FROM (${this.bronzeRows(files)})`);
      const existing =
        current.length === 0
          ? 'SELECT * FROM incoming WHERE false'
          : `SELECT ${COLUMN_NAMES}, regexp_extract(filename, 'date=([0-9-]+)', 1) AS date
             FROM read_parquet([${current.map((k) => sqlString(this.localPathOf(k))).join(', ')}], filename = true)`;
      await db.run(`CREATE OR REPLACE TABLE existing AS ${existing}`);
      await db.run(`CREATE OR REPLACE TABLE winners AS
        SELECT * FROM (
          SELECT * FROM existing WHERE entity_key IN (SELECT entity_key FROM incoming)
          UNION ALL SELECT * FROM incoming)
        QUALIFY row_number() OVER (PARTITION BY entity_key ORDER BY updated_at DESC, event_id DESC) = 1`);
      const affected = await db.runAndReadAll(`
        SELECT DISTINCT date FROM existing WHERE entity_key IN (SELECT entity_key FROM incoming)
        UNION SELECT DISTINCT date FROM winners ORDER BY date`);
      let bytes = 0;
      const keys: string[] = [];
      for (const [date] of affected.getRowsJS() as [string][]) {
        const key = `${dataset}/date=${date}/part-0.parquet`;
        const rows = `SELECT * FROM existing WHERE date = '${date}'
            AND entity_key NOT IN (SELECT entity_key FROM winners)
          UNION ALL SELECT * FROM winners WHERE date = '${date}'`;
        const count = await db.runAndReadAll(`SELECT count(*)::INTEGER FROM (${rows})`);
        if (count.getRowsJS()[0]?.[0] === 0) {
          await this.storage.remove(key);
          continue;
        }
        bytes += await this.copyTo(db, key, `SELECT ${COLUMN_NAMES} FROM (${rows}) ORDER BY entity_key`);
        keys.push(key);
      }
      await db.run('DROP TABLE incoming; DROP TABLE existing; DROP TABLE winners');
      return { keys, bytes };
    });
  }

  private localPathOf(key: string): string {
    const local = this.storage.localPath(key);
    if (!local) throw new Error(`the silver writer reads local files; ${key} has no local path`);
    return local;
  }

  /** Closes DuckDB, if a merge opened it, once the merge in progress (if any) is done. */
  async close(): Promise<void> {
    await this.tail;
    if (!this.duck) return;
    const { instance, db } = await this.duck;
    db.closeSync();
    instance.closeSync();
  }
}
