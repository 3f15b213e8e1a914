import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import type { BronzeFile } from './bronze.ts';
import { partitionValue } from './event.ts';
import type { LakeStorage } from './storage.ts';

/**
 * Silver output: Parquet under silver/<dataset>/date=YYYY-MM-DD/, written by DuckDB's Parquet writer
 * from the bronze files just made durable. DuckDB parses those JSON lines on its own thread, so the
 * sink's event loop never copies a record into DuckDB (the appender took a tenth of its time).
 *
 * - Event datasets (silver/<source>/): one row per distinct event. Files are named like bronze's
 *   (topic, partition, first offset), so a replay rewrites the same files.
 * - Entity datasets (silver/<source>_latest/): one row per entity key, the version with the latest
 *   updated_at (ties: the greater event_id). A merge rewrites every affected date partition as one
 *   part-0.parquet, published atomically (the partition-overwrite pattern).
 *
 * `payload` is the bronze payload as DuckDB's JSON text: the same JSON value, minified (bronze keeps
 * the bytes as sent).
 */

/** How DuckDB reads a bronze line (libs/lake/bronze.ts writes them). */
const BRONZE_COLUMNS = `{event_id: 'VARCHAR', source: 'VARCHAR', event_type: 'VARCHAR', entity_key: 'VARCHAR',
  event_time: 'TIMESTAMP', ingested_at: 'TIMESTAMP', updated_at: 'TIMESTAMP', payload: 'JSON',
  kafka: 'STRUCT(topic VARCHAR, "partition" INTEGER, "offset" BIGINT)'}`;

// DuckDB's JSON reader buffers twice this much per file; its 16 MiB default then needs a 32 MiB buffer.
// A bronze line is one Kafka record (the relay keeps those under 1 MiB) plus a small envelope.
const MAX_LINE_BYTES = 4 * 1024 * 1024;

/** The stored row: timestamps as TIMESTAMP (UTC), the partition date only in the path. */
const COLUMN_NAMES = `event_id, source, event_type, entity_key, event_time, ingested_at, updated_at, payload,
  kafka_topic, kafka_partition, kafka_offset`;

// Snappy: read by every Parquet reader (hyparquet, Spark, Athena) without optional codecs.
const PARQUET = '(FORMAT parquet, COMPRESSION snappy)';

export function eventDataset(source: string): string {
  return partitionValue(source);
}

export function entityDataset(source: string): string {
  return `${partitionValue(source)}_latest`;
}

function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

export interface SilverWrite {
  /** Keys of the files written. */
  keys: string[];
  bytes: number;
}

export class SilverWriter {
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly storage: LakeStorage,
    private readonly instance: DuckDBInstance,
    private readonly db: DuckDBConnection,
  ) {}

  /** One in-process DuckDB: a single thread and a memory cap, as the sink shares its machine. */
  static async create(storage: LakeStorage, options: { memoryLimit?: string } = {}): Promise<SilverWriter> {
    const instance = await DuckDBInstance.create(':memory:', {
      threads: '1',
      memory_limit: options.memoryLimit ?? '128MB',
      preserve_insertion_order: 'false',
    });
    const db = await instance.connect();
    return new SilverWriter(storage, instance, db);
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
        maximum_object_size = ${MAX_LINE_BYTES})`;
  }

  private async copyTo(key: string, select: string): Promise<number> {
    return this.storage.putFrom(key, async (scratch) => {
      await this.db.run(`COPY (${select}) TO ${sqlString(scratch)} ${PARQUET}`);
    });
  }

  /**
   * The events of one topic-partition batch (deduped, already in these durable bronze files) into
   * their date partitions: one silver file per source and event date, named after its first record.
   */
  writeEvents(files: BronzeFile[]): Promise<SilverWrite> {
    return this.serial(async () => {
      const groups = new Map<string, BronzeFile[]>();
      for (const f of files) {
        const key = `${f.source}\u0000${f.eventDate}`;
        const group = groups.get(key);
        if (group) group.push(f);
        else groups.set(key, [f]);
      }
      let bytes = 0;
      const keys: string[] = [];
      for (const group of groups.values()) {
        // Bronze files come in offset order, so the group's first file holds its first record.
        const { source, eventDate, stem } = group[0]!;
        const key = `silver/${eventDataset(source)}/date=${eventDate}/part-${stem}.parquet`;
        // Rows in file order, each file in offset order: no sort. Sorting by offset cost a quarter of
        // the write's CPU and buffered every row (payloads included) first.
        bytes += await this.copyTo(key, this.bronzeRows(group));
        keys.push(key);
      }
      return { keys, bytes };
    });
  }

  /**
   * Merges the versions in one source's bronze files into silver/<source>_latest/. The caller holds
   * the dataset's lock (several sinks may merge into one dataset). Existing rows of the incoming keys
   * are found in every date partition, because a newer version may move an entity to another date.
   */
  mergeEntities(source: string, files: BronzeFile[]): Promise<SilverWrite> {
    return this.serial(async () => {
      if (files.length === 0) return { keys: [], bytes: 0 };
      const dataset = `silver/${entityDataset(source)}`;
      const current = (await this.storage.list(dataset)).filter((k) => k.endsWith('.parquet'));
      await this.db.run(`CREATE OR REPLACE TABLE incoming AS
        SELECT ${COLUMN_NAMES}, strftime(event_time, '%Y-%m-%d') AS date FROM (${this.bronzeRows(files)})`);
      const existing =
        current.length === 0
          ? 'SELECT * FROM incoming WHERE false'
          : `SELECT ${COLUMN_NAMES}, regexp_extract(filename, 'date=([0-9-]+)', 1) AS date
             FROM read_parquet([${current.map((k) => sqlString(this.localPathOf(k))).join(', ')}], filename = true)`;
      await this.db.run(`CREATE OR REPLACE TABLE existing AS ${existing}`);
      await this.db.run(`CREATE OR REPLACE TABLE winners AS
        SELECT * FROM (
          SELECT * FROM existing WHERE entity_key IN (SELECT entity_key FROM incoming)
          UNION ALL SELECT * FROM incoming)
        QUALIFY row_number() OVER (PARTITION BY entity_key ORDER BY updated_at DESC, event_id DESC) = 1`);
      const affected = await this.db.runAndReadAll(`
        SELECT DISTINCT date FROM existing WHERE entity_key IN (SELECT entity_key FROM incoming)
        UNION SELECT DISTINCT date FROM winners ORDER BY date`);
      let bytes = 0;
      const keys: string[] = [];
      for (const [date] of affected.getRowsJS() as [string][]) {
        const key = `${dataset}/date=${date}/part-0.parquet`;
        const rows = `SELECT * FROM existing WHERE date = '${date}'
            AND entity_key NOT IN (SELECT entity_key FROM winners)
          UNION ALL SELECT * FROM winners WHERE date = '${date}'`;
        const count = await this.db.runAndReadAll(`SELECT count(*)::INTEGER FROM (${rows})`);
        if (count.getRowsJS()[0]?.[0] === 0) {
          await this.storage.remove(key);
          continue;
        }
        bytes += await this.copyTo(key, `SELECT ${COLUMN_NAMES} FROM (${rows}) ORDER BY entity_key`);
        keys.push(key);
      }
      await this.db.run('DROP TABLE incoming; DROP TABLE existing; DROP TABLE winners');
      return { keys, bytes };
    });
  }

  private localPathOf(key: string): string {
    const local = this.storage.localPath(key);
    if (!local) throw new Error(`the silver writer reads local files; ${key} has no local path`);
    return local;
  }

  close(): void {
    this.db.closeSync();
    this.instance.closeSync();
  }
}
