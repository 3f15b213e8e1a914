import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { type LakeEvent, partitionValue, recordFileStem, utcDate } from './event.ts';
import type { LakeStorage } from './storage.ts';

/**
 * Silver output: Parquet under silver/<dataset>/date=YYYY-MM-DD/, written by DuckDB's Parquet writer.
 *
 * - Event datasets (silver/<source>/): one row per distinct event. Files are named like bronze's
 *   (topic, partition, first offset), so a replay rewrites the same files.
 * - Entity datasets (silver/<source>_latest/): one row per entity key, the version with the latest
 *   updated_at (ties: the greater event_id). A merge rewrites every affected date partition as one
 *   part-0.parquet, published atomically (the partition-overwrite pattern).
 */

const COLUMNS = `event_id VARCHAR, source VARCHAR, event_type VARCHAR, entity_key VARCHAR, event_time_ms BIGINT,
  ingested_at_ms BIGINT, updated_at_ms BIGINT, payload VARCHAR, kafka_topic VARCHAR, kafka_partition INTEGER,
  kafka_offset BIGINT, date VARCHAR`;

/** The stored row: timestamps as TIMESTAMP (UTC), the partition date only in the path. */
const PROJECTION = `event_id, source, event_type, entity_key, epoch_ms(event_time_ms) AS event_time,
  epoch_ms(ingested_at_ms) AS ingested_at, epoch_ms(updated_at_ms) AS updated_at, payload, kafka_topic,
  kafka_partition, kafka_offset`;

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
  files: number;
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

  private async load(events: LakeEvent[]): Promise<void> {
    await this.db.run(`CREATE OR REPLACE TABLE incoming (${COLUMNS})`);
    const appender = await this.db.createAppender('incoming');
    for (const e of events) {
      appender.appendVarchar(e.eventId);
      appender.appendVarchar(e.source);
      appender.appendVarchar(e.eventType);
      appender.appendVarchar(e.entityKey);
      appender.appendBigInt(BigInt(e.eventTime));
      appender.appendBigInt(BigInt(e.ingestedAt));
      appender.appendBigInt(BigInt(e.updatedAt));
      appender.appendVarchar(e.payload);
      appender.appendVarchar(e.topic);
      appender.appendInteger(e.partition);
      appender.appendBigInt(BigInt(e.offset));
      appender.appendVarchar(utcDate(e.eventTime));
      appender.endRow();
    }
    appender.closeSync();
  }

  private async copyTo(key: string, select: string): Promise<number> {
    return this.storage.putFrom(key, async (scratch) => {
      await this.db.run(`COPY (${select}) TO ${sqlString(scratch)} ${PARQUET}`);
    });
  }

  /** Events of one topic-partition (offset order, already deduped) into their date partitions. */
  writeEvents(events: LakeEvent[]): Promise<SilverWrite> {
    return this.serial(async () => {
      const firsts = new Map<string, LakeEvent>();
      for (const e of events) {
        const key = `${e.source}\u0000${utcDate(e.eventTime)}`;
        if (!firsts.has(key)) firsts.set(key, e);
      }
      if (firsts.size === 0) return { files: 0, bytes: 0 };
      await this.load(events);
      let bytes = 0;
      for (const first of firsts.values()) {
        const date = utcDate(first.eventTime);
        const key = `silver/${eventDataset(first.source)}/date=${date}/part-${recordFileStem(first.topic, first.partition, first.offset)}.parquet`;
        bytes += await this.copyTo(
          key,
          `SELECT ${PROJECTION} FROM incoming WHERE source = ${sqlString(first.source)} AND date = '${date}' ORDER BY kafka_offset`,
        );
      }
      await this.db.run('DROP TABLE incoming');
      return { files: firsts.size, bytes };
    });
  }

  /**
   * Merges versions of entities into silver/<source>_latest/. The caller holds the dataset's lock
   * (several sinks may merge into one dataset). Existing rows of the incoming keys are found in every
   * date partition, because a newer version may move an entity to another date.
   */
  mergeEntities(source: string, events: LakeEvent[]): Promise<SilverWrite> {
    return this.serial(async () => {
      if (events.length === 0) return { files: 0, bytes: 0 };
      const dataset = `silver/${entityDataset(source)}`;
      const files = (await this.storage.list(dataset)).filter((k) => k.endsWith('.parquet'));
      await this.load(events);
      const paths = files.map((k) => sqlString(this.localPathOf(k)));
      const existing =
        paths.length === 0
          ? `SELECT * FROM incoming WHERE false`
          : `SELECT * EXCLUDE (filename, event_time, ingested_at, updated_at),
               epoch_ms(event_time) AS event_time_ms, epoch_ms(ingested_at) AS ingested_at_ms,
               epoch_ms(updated_at) AS updated_at_ms, regexp_extract(filename, 'date=([0-9-]+)', 1) AS date
             FROM read_parquet([${paths.join(', ')}], filename = true)`;
      await this.db.run(`CREATE OR REPLACE TABLE existing AS SELECT ${COLUMN_NAMES} FROM (${existing})`);
      await this.db.run(`CREATE OR REPLACE TABLE winners AS
        SELECT ${COLUMN_NAMES} FROM (
          SELECT * FROM existing WHERE entity_key IN (SELECT entity_key FROM incoming)
          UNION ALL SELECT * FROM incoming)
        QUALIFY row_number() OVER (PARTITION BY entity_key ORDER BY updated_at_ms DESC, event_id DESC) = 1`);
      const affected = await this.db.runAndReadAll(`
        SELECT DISTINCT date FROM existing WHERE entity_key IN (SELECT entity_key FROM incoming)
        UNION SELECT DISTINCT date FROM winners ORDER BY date`);
      let bytes = 0;
      let written = 0;
      for (const [date] of affected.getRowsJS() as [string][]) {
        const key = `${dataset}/date=${date}/part-0.parquet`;
        const rows = `SELECT ${COLUMN_NAMES} FROM existing WHERE date = '${date}'
            AND entity_key NOT IN (SELECT entity_key FROM winners)
          UNION ALL SELECT ${COLUMN_NAMES} FROM winners WHERE date = '${date}'`;
        const count = await this.db.runAndReadAll(`SELECT count(*)::INTEGER FROM (${rows})`);
        if (count.getRowsJS()[0]?.[0] === 0) {
          await this.storage.remove(key);
          continue;
        }
        bytes += await this.copyTo(key, `SELECT ${PROJECTION} FROM (${rows}) ORDER BY entity_key`);
        written += 1;
      }
      await this.db.run('DROP TABLE incoming; DROP TABLE existing; DROP TABLE winners');
      return { files: written, bytes };
    });
  }

  private localPathOf(key: string): string {
    const local = this.storage.localPath(key);
    if (!local) throw new Error(`silver merge needs local files; ${key} has no local path`);
    return local;
  }

  close(): void {
    this.db.closeSync();
    this.instance.closeSync();
  }
}

const COLUMN_NAMES = `event_id, source, event_type, entity_key, event_time_ms, ingested_at_ms, updated_at_ms, payload,
  kafka_topic, kafka_partition, kafka_offset, date`;
