import { createHash } from 'node:crypto';
import { appendFile, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../libs/db/index.ts';
import { testPool } from '../helpers/real-stack.ts';
import { counts, dropSource, dropsDir, ingestOnce, manifestRows, storedEvents } from './helpers.ts';

let pool: Pool;
beforeAll(() => {
  pool = testPool();
});
afterAll(async () => {
  await pool.end();
});

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

const ORDERS = [
  { id: 'o-1', amount: 10, at: '2026-03-01T10:00:00Z' },
  { id: 'o-2', amount: 20, at: '2026-03-01T11:00:00Z' },
  { id: 'o-3', amount: 30, at: '2026-03-01T12:00:00Z' },
];

describe('each format: every record once', () => {
  it('CSV (RFC 4180: quoted commas, doubled quotes, line breaks in a field, CRLF): values as text', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const csv =
      'id,note,at\r\no-1,"a, b",2026-03-01T10:00:00Z\r\no-2,"say ""hi""",1772362800\r\no-3,"two\nlines",1772366400000\r\n';
    await writeFile(path.join(dir, 'orders.csv'), csv);
    const outcomes = await ingestOnce(pool, source, dir, { keyColumn: 'id', timeColumn: 'at' });
    expect(outcomes).toMatchObject([
      { file: 'orders.csv', status: 'ingested', records: 3, accepted: 3, duplicates: 0 },
    ]);
    const events = await storedEvents(pool, source);
    const digest = sha256(Buffer.from(csv));
    expect(events.map((e) => e.event_id)).toEqual([`${digest}:1`, `${digest}:2`, `${digest}:3`]);
    expect(events.map((e) => e.entity_key)).toEqual(['o-1', 'o-2', 'o-3']);
    expect(events.map((e) => e.payload.note)).toEqual(['a, b', 'say "hi"', 'two\nlines']);
    // ISO, epoch seconds and epoch milliseconds.
    expect(events.map((e) => e.event_time.toISOString())).toEqual([
      '2026-03-01T10:00:00.000Z',
      '2026-03-01T11:00:00.000Z',
      '2026-03-01T12:00:00.000Z',
    ]);
    expect(events[1]!.lineage).toMatchObject({ file: 'orders.csv', sha256: digest, record: '2', location: dir });
    expect(await counts(pool, source)).toEqual({ events: 3, outbox: 3, distinct: 3 });
  });

  it('JSON (an array of objects), NDJSON and JSONL, without --key or --time: file name and mtime', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, 'a.json'), JSON.stringify(ORDERS));
    await writeFile(
      path.join(dir, 'b.ndjson'),
      `${ORDERS.map((o) => JSON.stringify({ ...o, id: `b${o.id}` })).join('\n')}\n\n`,
    );
    await writeFile(
      path.join(dir, 'c.jsonl'),
      ORDERS.map((o) => JSON.stringify({ ...o, id: `c${o.id}` })).join('\r\n'),
    );
    const mtime = new Date('2026-02-01T00:00:00Z');
    await utimes(path.join(dir, 'a.json'), mtime, mtime);
    const outcomes = await ingestOnce(pool, source, dir);
    expect(outcomes.map((o) => [o.file, o.status, o.status === 'ingested' && o.accepted])).toEqual([
      ['a.json', 'ingested', 3],
      ['b.ndjson', 'ingested', 3],
      ['c.jsonl', 'ingested', 3],
    ]);
    const events = await storedEvents(pool, source);
    expect(events).toHaveLength(9);
    const fromA = events.filter((e) => e.lineage.file === 'a.json');
    expect(fromA.map((e) => e.payload)).toEqual(ORDERS);
    expect(new Set(fromA.map((e) => e.entity_key))).toEqual(new Set(['a.json']));
    expect(new Set(fromA.map((e) => e.event_time.toISOString()))).toEqual(new Set([mtime.toISOString()]));
    expect(await counts(pool, source)).toEqual({ events: 9, outbox: 9, distinct: 9 });
  });

  it('Parquet: 64-bit integers as numbers, every row once', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const file = parquetWriteBuffer({
      columnData: [
        { name: 'id', data: ORDERS.map((o) => o.id), type: 'STRING' },
        { name: 'amount', data: ORDERS.map((o) => BigInt(o.amount)), type: 'INT64' },
        { name: 'at', data: ORDERS.map((o) => o.at), type: 'STRING' },
      ],
    });
    await writeFile(path.join(dir, 'orders.parquet'), Buffer.from(file));
    const outcomes = await ingestOnce(pool, source, dir, { keyColumn: 'id', timeColumn: 'at' });
    expect(outcomes).toMatchObject([{ status: 'ingested', records: 3, accepted: 3 }]);
    const events = await storedEvents(pool, source);
    expect(events.map((e) => e.payload)).toEqual(ORDERS);
    expect(events.map((e) => e.entity_key)).toEqual(['o-1', 'o-2', 'o-3']);
    expect(await counts(pool, source)).toEqual({ events: 3, outbox: 3, distinct: 3 });
  });

  it('leaves dotfiles, folders and unknown extensions alone; --format reads any name as that format', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, '.orders.csv.part'), 'id\n1\n');
    await writeFile(path.join(dir, '.hidden.csv'), 'id\n1\n');
    await writeFile(path.join(dir, 'notes.txt'), '{"id":1}\n');
    const outcomes = await ingestOnce(pool, source, dir);
    expect(outcomes).toEqual([{ file: 'notes.txt', status: 'unknown-format' }]);
    expect(await counts(pool, source)).toMatchObject({ events: 0 });
    const forced = await ingestOnce(pool, source, dir, { format: 'ndjson' });
    expect(forced).toMatchObject([{ file: 'notes.txt', status: 'ingested', accepted: 1 }]);
  });
});

describe('the manifest', () => {
  it('a re-dropped file (same bytes, another name) ingests nothing; a corrected file of the same name is new', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const first = `${ORDERS.map((o) => JSON.stringify(o)).join('\n')}\n`;
    await writeFile(path.join(dir, 'day-1.ndjson'), first);
    await ingestOnce(pool, source, dir);
    await writeFile(path.join(dir, 'day-1-copy.ndjson'), first);
    const again = await ingestOnce(pool, source, dir);
    expect(again).toMatchObject([
      { file: 'day-1-copy.ndjson', status: 'already-processed', firstName: 'day-1.ndjson' },
      { file: 'day-1.ndjson', status: 'already-processed', firstName: 'day-1.ndjson' },
    ]);
    expect(await counts(pool, source)).toEqual({ events: 3, outbox: 3, distinct: 3 });

    await writeFile(path.join(dir, 'day-1.ndjson'), first.replace('"amount":30', '"amount":31'));
    const corrected = await ingestOnce(pool, source, dir);
    expect(corrected.find((o) => o.file === 'day-1.ndjson')).toMatchObject({ status: 'ingested', accepted: 3 });
    expect(await counts(pool, source)).toEqual({ events: 6, outbox: 6, distinct: 6 });
    expect((await manifestRows(pool, source)).map((r) => [r.file_name, r.records, r.records_done])).toEqual([
      ['day-1.ndjson', 3, 3],
      ['day-1.ndjson', 3, 3],
    ]);
  });

  it('commits in chunks with the progress; a file part-way in resumes after its last chunk', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const lines = Array.from({ length: 25 }, (_, i) => JSON.stringify({ id: i }));
    await writeFile(path.join(dir, 'big.ndjson'), `${lines.join('\n')}\n`);
    const bytes = await readFile(path.join(dir, 'big.ndjson'));
    // What a run killed after two chunks of 10 leaves: the manifest at 20 and those 20 events.
    await ingestOnce(pool, source, dir, { chunkRecords: 10 });
    const events = await storedEvents(pool, source);
    expect(events).toHaveLength(25);
    expect(events[24]!.event_id).toBe(`${sha256(bytes)}:25`);

    const other = dropSource();
    await pool.query(
      `INSERT INTO drop_manifest (source, sha256, file_name, size_bytes, format, file_mtime, records, records_done)
       VALUES ($1, $2, 'big.ndjson', $3, 'ndjson', now(), 25, 20)`,
      [other, sha256(bytes), bytes.length],
    );
    const resumed = await ingestOnce(pool, other, dir, { chunkRecords: 10 });
    expect(resumed).toMatchObject([{ status: 'ingested', records: 25, accepted: 5, resumedAfter: 20 }]);
    expect((await storedEvents(pool, other)).map((e) => e.payload.id)).toEqual([20, 21, 22, 23, 24]);
    expect(await manifestRows(pool, other)).toMatchObject([{ records: 25, records_done: 25 }]);
  });

  it('two passes at once on one folder write each chunk once', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, 'shared.ndjson'), Array.from({ length: 2000 }, (_, i) => `{"id":${i}}`).join('\n'));
    const both = await Promise.all([
      ingestOnce(pool, source, dir, { chunkRecords: 100 }),
      ingestOnce(pool, source, dir, { chunkRecords: 100 }),
    ]);
    const accepted = both.flat().reduce((sum, o) => sum + (o.status === 'ingested' ? o.accepted + o.duplicates : 0), 0);
    expect(accepted).toBe(2000);
    expect(await counts(pool, source)).toEqual({ events: 2000, outbox: 2000, distinct: 2000 });
  });

  it('an empty file is processed once with 0 records', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, 'empty.csv'), '');
    expect(await ingestOnce(pool, source, dir)).toMatchObject([{ status: 'ingested', records: 0 }]);
    expect(await ingestOnce(pool, source, dir)).toMatchObject([{ status: 'already-processed' }]);
  });

  it('a file that changes between the two looks is not read, and is read once it is still', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const file = path.join(dir, 'growing.ndjson');
    await writeFile(file, '{"id":1}\n');
    const writer = setTimeout(() => void appendFile(file, '{"id":2}\n'), 50);
    const outcomes = await ingestOnce(pool, source, dir, { settleMs: 300 });
    clearTimeout(writer);
    expect(outcomes).toEqual([{ file: 'growing.ndjson', status: 'unsettled' }]);
    expect(await counts(pool, source)).toMatchObject({ events: 0 });
    expect(await ingestOnce(pool, source, dir, { settleMs: 50 })).toMatchObject([{ status: 'ingested', records: 2 }]);
  });
});

describe('bad input: the file is refused, naming file, line or record and problem; nothing of it is written', () => {
  const cases: Array<[string, string, string | Buffer, Record<string, string>?]> = [
    ['bad.ndjson', 'bad.ndjson: line 3 (record 3): not valid JSON', '{"id":1}\n{"id":2}\n{"id":3\n{"id":4}\n'],
    ['array.ndjson', 'array.ndjson: line 2 (record 2): an array, not a JSON object', '{"id":1}\n[1,2]\n'],
    ['short.csv', 'short.csv: line 3 (record 2): 2 field(s) where the header has 3', 'a,b,c\n1,2,3\n4,5\n'],
    ['quote.csv', 'quote.csv: line 2: a quote inside an unquoted field', 'a,b\n1,x"y\n'],
    ['open.csv', 'open.csv: line 2: unclosed quote (opened on line 2)', 'a,b\n1,"never closed\n2,3\n'],
    ['dup.csv', 'dup.csv: line 1: the header names column "a" twice', 'a,a\n1,2\n'],
    ['object.json', 'object.json: a object, not a JSON array of objects', '{"id":1}'],
    ['items.json', 'items.json: record 2: a number, not a JSON object', '[{"id":1},2]'],
    ['latin1.csv', 'latin1.csv: not valid UTF-8 text', Buffer.from('a\n\xe9\n', 'latin1')],
    [
      'nokey.ndjson',
      'nokey.ndjson: line 2 (record 2): key column "id" is missing or empty (got nothing)',
      '{"id":1}\n{"x":2}\n',
      { keyColumn: 'id' },
    ],
    [
      'notime.csv',
      'notime.csv: line 3 (record 2): time column "at" is not an ISO 8601 time or epoch (got "soon")',
      'at\n2026-01-01\nsoon\n',
      { timeColumn: 'at' },
    ],
    [
      'nul.ndjson',
      'nul.ndjson: line 2 (record 2): payload: contains a \\u0000 (NUL) character',
      '{"a":1}\n{"a":"x\\u0000"}\n',
    ],
    ['broken.parquet', 'broken.parquet: not a readable Parquet file', 'PAR1 not really'],
  ];
  it.each(cases)('%s', async (name, message, content, extra = {}) => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, name), content);
    await writeFile(path.join(dir, 'zz-good.ndjson'), '{"id":"fine","at":"2026-01-01T00:00:00Z"}\n');
    const outcomes = await ingestOnce(pool, source, dir, extra);
    const refused = outcomes.find((o) => o.file === name);
    expect(refused?.status).toBe('refused');
    expect(refused?.status === 'refused' && refused.error).toContain(message);
    expect(refused?.status === 'refused' && refused.error).toMatch(/; nothing of it was written$/);
    // The other file of the folder still goes in.
    expect(outcomes.find((o) => o.file === 'zz-good.ndjson')).toMatchObject({ status: 'ingested', accepted: 1 });
    expect(await counts(pool, source)).toEqual({ events: 1, outbox: 1, distinct: 1 });
    expect((await manifestRows(pool, source)).map((r) => r.file_name)).toEqual(['zz-good.ndjson']);
  });

  it('a bad record after the first chunk: still nothing written (the whole file is checked first)', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const lines = Array.from({ length: 30 }, (_, i) => JSON.stringify({ id: i }));
    lines[27] = '{"id": oops}';
    await writeFile(path.join(dir, 'late.ndjson'), lines.join('\n'));
    const outcomes = await ingestOnce(pool, source, dir, { chunkRecords: 10 });
    expect(outcomes).toMatchObject([{ status: 'refused' }]);
    expect(outcomes[0]!.status === 'refused' && outcomes[0]!.error).toContain('late.ndjson: line 28 (record 28)');
    expect(await counts(pool, source)).toEqual({ events: 0, outbox: 0, distinct: 0 });
    expect(await manifestRows(pool, source)).toEqual([]);
  });
});
