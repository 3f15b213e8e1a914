import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import type { LakeEvent } from '../../libs/lake/event.ts';
import { encodeEvents } from '../../libs/lake/silver.ts';

function lakeEvent(overrides: Partial<LakeEvent>): LakeEvent {
  return {
    eventId: 'e-1',
    source: 'shop',
    eventType: 'order.created',
    entityKey: 'order-1',
    eventTime: Date.UTC(2026, 2, 1, 10, 0, 0, 123),
    ingestedAt: Date.UTC(2026, 2, 2, 9, 30),
    updatedAt: Date.UTC(2026, 2, 1, 10, 0, 0, 123),
    payload: Buffer.from('{"amount": 1.50, "note": "é"}'),
    lineage: {},
    topic: 'conveyor.shop',
    partition: 2,
    offset: '9007199254740993',
    ...overrides,
  };
}

/** Rows of one Parquet file as DuckDB reads it, and its Parquet schema as DuckDB describes it. */
async function readWithDuckDb(file: string) {
  const db = await (await DuckDBInstance.create(':memory:')).connect();
  try {
    const rows = await db.runAndReadAll(
      `SELECT event_id, source, event_type, entity_key, strftime(event_time, '%Y-%m-%dT%H:%M:%S.%g'),
         strftime(ingested_at, '%Y-%m-%dT%H:%M:%S.%g'), strftime(updated_at, '%Y-%m-%dT%H:%M:%S.%g'), payload,
         kafka_topic, kafka_partition, kafka_offset::VARCHAR FROM read_parquet('${file}')`,
    );
    const schema = await db.runAndReadAll(
      `SELECT name, type, converted_type, repetition_type, logical_type FROM parquet_schema('${file}')`,
    );
    return { rows: rows.getRowsJS(), schema: schema.getRowsJS() };
  } finally {
    db.closeSync();
  }
}

describe('silver event files (hyparquet-writer)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-silver-'));

  it('hold every field as DuckDB reads it: payload bytes as sent, times to the millisecond, 64-bit offsets', async () => {
    const events = [
      lakeEvent({}),
      // A typed (record) payload arrives as a string; the latest representable time; a null-free row.
      lakeEvent({
        eventId: 'e-2',
        payload: '{"n":2}',
        eventTime: Date.UTC(9999, 11, 31, 23, 59, 59, 999),
        offset: '9007199254740994',
      }),
    ];
    const file = path.join(dir, 'events.parquet');
    fs.writeFileSync(file, encodeEvents(events));
    const { rows } = await readWithDuckDb(file);
    expect(rows).toEqual([
      [
        'e-1',
        'shop',
        'order.created',
        'order-1',
        '2026-03-01T10:00:00.123',
        '2026-03-02T09:30:00.000',
        '2026-03-01T10:00:00.123',
        '{"amount": 1.50, "note": "é"}',
        'conveyor.shop',
        2,
        '9007199254740993',
      ],
      [
        'e-2',
        'shop',
        'order.created',
        'order-1',
        '9999-12-31T23:59:59.999',
        '2026-03-02T09:30:00.000',
        '2026-03-01T10:00:00.123',
        '{"n":2}',
        'conveyor.shop',
        2,
        '9007199254740994',
      ],
    ]);
  });

  it('are a function of their rows alone: a replay writes the same bytes, whatever was encoded before', () => {
    const rows = Array.from({ length: 500 }, (_, i) =>
      lakeEvent({
        eventId: `e-${i}`,
        offset: String(i),
        payload: Buffer.from(`{"i":${i},"pad":"${'ab'.repeat(i % 50)}"}`),
      }),
    );
    const first = Buffer.from(encodeEvents(rows));
    // Other files in between (larger, other bytes), as a sink writes them.
    encodeEvents(rows.map((r) => ({ ...r, payload: Buffer.from(`{"other":"${'xyz'.repeat(400)}"}`) })));
    encodeEvents(rows.slice(0, 7));
    expect(Buffer.from(encodeEvents(rows)).equals(first)).toBe(true);
  });

  it('have the Parquet schema DuckDB writes for the same columns (entity datasets are written by DuckDB)', async () => {
    const file = path.join(dir, 'schema.parquet');
    fs.writeFileSync(file, encodeEvents([lakeEvent({})]));
    const duckFile = path.join(dir, 'duck.parquet');
    const db = await (await DuckDBInstance.create(':memory:')).connect();
    await db.run(`COPY (SELECT * FROM read_parquet('${file}')) TO '${duckFile}' (FORMAT parquet)`);
    db.closeSync();
    const ours = (await readWithDuckDb(file)).schema;
    expect(ours.length).toBe(12);
    expect(ours.slice(1)).toEqual((await readWithDuckDb(duckFile)).schema.slice(1));
  });
});
