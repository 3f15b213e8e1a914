import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LakeEvent } from '../../libs/lake/event.ts';
import { encodeEvents } from '../../libs/lake/silver.ts';
import { LocalDirStorage } from '../../libs/lake/storage.ts';
import { isClean, verifyOutput } from '../../services/sink/verify.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';

const lakeEvent = (source: string, eventId: string, offset: number): LakeEvent => ({
  eventId,
  source,
  eventType: 't',
  entityKey: 'k',
  eventTime: Date.UTC(2026, 2, 1, 12),
  ingestedAt: Date.UTC(2026, 2, 1, 12),
  updatedAt: Date.UTC(2026, 2, 1, 12),
  payload: '{"n":1}',
  lineage: {},
  topic: `conveyor.${source}`,
  partition: 0,
  offset: String(offset),
});

/** A lake holding `ids` (repeats allowed) of `source` in bronze and in silver. */
function lakeWith(source: string, ids: string[]): string {
  const lake = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-verify-test-'));
  const events = ids.map((id, i) => lakeEvent(source, id, i));
  const bronze = path.join(
    lake,
    `bronze/source=${source}/event_type=t/event_date=2026-03-01/ingest_date=2026-03-01/hour=12`,
  );
  fs.mkdirSync(bronze, { recursive: true });
  const lines = events.map((e) => `${JSON.stringify({ event_id: e.eventId, source, payload: { n: 1 } })}\n`);
  // Two files, as a lake has many.
  fs.writeFileSync(path.join(bronze, 'a.jsonl'), lines.slice(0, 3).join(''));
  fs.writeFileSync(path.join(bronze, 'b.jsonl'), lines.slice(3).join(''));
  const silver = path.join(lake, `silver/${source}/date=2026-03-01`);
  fs.mkdirSync(silver, { recursive: true });
  fs.writeFileSync(path.join(silver, 'part-a.parquet'), encodeEvents(events));
  return lake;
}

describe('verify (Postgres, bronze JSON lines, silver Parquet)', () => {
  const pool = testPool(2);
  afterAll(() => pool.end());

  async function accept(source: string, ids: string[]): Promise<void> {
    await pool.query(
      `INSERT INTO raw_events (source, event_id, event_type, entity_key, event_time, payload)
       SELECT $1, id, 't', 'k', now(), '{}' FROM unnest($2::text[]) id`,
      [source, ids],
    );
  }

  it('counts missing, duplicated and extra ids in each layer and names the first ones in natural order', async () => {
    const source = uniqueName('verify');
    const id = (n: number) => `${source}-${n}`;
    await accept(source, [1, 2, 3, 4, 10, 11].map(id));
    // 3 and 4 missing; 2 and 10 twice; 99 and 100 never accepted.
    const lake = lakeWith(source, [1, 2, 10, 2, 10, 11, 100, 99].map(id));
    const reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [source] });
    const key = (n: number) => `${source}/${id(n)}`;
    for (const layer of ['bronze', 'silver'] as const) {
      expect(reports.find((r) => r.layer === layer)).toEqual({
        layer,
        accepted: 6,
        distinctInOutput: 6,
        rowsInOutput: 8,
        missing: 2,
        duplicated: 2,
        extra: 2,
        examples: { missing: [key(3), key(4)], duplicated: [key(2), key(10)], extra: [key(99), key(100)] },
      });
    }
    expect(isClean(reports)).toBe(false);
  });

  it('is clean when each accepted event is there once, and looks only at the sources asked for', async () => {
    const source = uniqueName('verify-clean');
    const other = uniqueName('verify-other');
    const ids = Array.from({ length: 20 }, (_, n) => `${source}-${n}`);
    await accept(source, ids);
    await accept(other, [`${other}-1`]);
    const lake = lakeWith(source, ids);
    const reports = await verifyOutput(pool, new LocalDirStorage(lake), { sources: [source] });
    expect(reports.map((r) => [r.layer, r.accepted, r.rowsInOutput, r.missing, r.duplicated, r.extra])).toEqual([
      ['bronze', 20, 20, 0, 0, 0],
      ['silver', 20, 20, 0, 0, 0],
    ]);
  });

  it('says when its memory limit is too small, and how to give it more', async () => {
    const source = uniqueName('verify-memory');
    await accept(source, [`${source}-1`]);
    const lake = lakeWith(source, [`${source}-1`]);
    await expect(
      verifyOutput(pool, new LocalDirStorage(lake), { sources: [source], memoryLimit: '1MB' }),
    ).rejects.toThrow(/memory limit \(1MB\); give it more with --memory/);
  });

  it('refuses a memory limit DuckDB does not take, naming it, and leaves no scratch folder', async () => {
    const source = uniqueName('verify-bad-memory');
    const lake = lakeWith(source, [`${source}-1`]);
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-verify-tmp-'));
    const before = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      for (const memoryLimit of ['banana', '12']) {
        await expect(verifyOutput(pool, new LocalDirStorage(lake), { sources: [source], memoryLimit })).rejects.toThrow(
          `DuckDB refused the memory limit "${memoryLimit}"`,
        );
      }
      expect(fs.readdirSync(tmp)).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
