import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { migrate } from '../../libs/db/index.ts';
import { runCli } from '../cli/run-cli.ts';
import { testPool } from '../helpers/real-stack.ts';

const SCHEMA_FINGERPRINT = `
  SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, column_name)
  FROM information_schema.columns WHERE table_schema = 'public'`;

describe('migrations', () => {
  const url = new URL(process.env.DATABASE_URL!);
  url.pathname = '/conveyor_migrate_test';
  const admin = new URL(url);
  admin.pathname = '/postgres';

  beforeAll(async () => {
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    await client.query('DROP DATABASE IF EXISTS conveyor_migrate_test WITH (FORCE)');
    await client.end();
  });
  afterAll(async () => {
    const client = new pg.Client({ connectionString: admin.toString() });
    await client.connect();
    await client.query('DROP DATABASE IF EXISTS conveyor_migrate_test WITH (FORCE)');
    await client.end();
  });

  it('creates the database, applies every migration, and a second run changes nothing', async () => {
    const first = await runCli(['migrate'], { DATABASE_URL: url.toString() });
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/applied \d+ migration/);

    const client = new pg.Client({ connectionString: url.toString() });
    await client.connect();
    const before = (await client.query(SCHEMA_FINGERPRINT)).rows[0].string_agg;

    const second = await runCli(['migrate'], { DATABASE_URL: url.toString() });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('up to date');
    expect(await migrate({ url: url.toString() })).toEqual([]);
    const after = (await client.query(SCHEMA_FINGERPRINT)).rows[0].string_agg;
    await client.end();
    expect(after).toBe(before);
  });
});

describe('raw_events', () => {
  const pool = testPool();
  afterAll(() => pool.end());

  it('is immutable: updates, deletes and truncation are refused by the database', async () => {
    await pool.query(
      `INSERT INTO raw_events (source, event_id, event_type, entity_key, event_time, payload)
       VALUES ('immut', 'e1', 't', 'k', now(), '{}')`,
    );
    await expect(pool.query(`UPDATE raw_events SET payload = '{"x":1}' WHERE source = 'immut'`)).rejects.toThrow(
      /immutable: UPDATE refused/,
    );
    await expect(pool.query(`DELETE FROM raw_events WHERE source = 'immut'`)).rejects.toThrow(
      /immutable: DELETE refused/,
    );
    await expect(pool.query('TRUNCATE raw_events CASCADE')).rejects.toThrow(/immutable: TRUNCATE refused/);
    const { rows } = await pool.query(`SELECT payload FROM raw_events WHERE source = 'immut'`);
    expect(rows).toEqual([{ payload: {} }]);
  });
});
