import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Pool } from '../../libs/db/index.ts';
import { runCli, startCli } from '../cli/run-cli.ts';
import { testPool } from '../helpers/real-stack.ts';
import { counts, dropSource, dropsDir, manifestRows } from './helpers.ts';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor');

let pool: Pool;
beforeAll(() => {
  pool = testPool();
});
afterAll(async () => {
  await pool.end();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('conveyor drops --once', () => {
  it('survives kill -9 mid-file: the rerun resumes after the last chunk, every record once', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const total = 50_000;
    const lines = Array.from({ length: total }, (_, i) =>
      JSON.stringify({ id: `r-${i}`, at: 1_780_000_000 + i, note: 'x'.repeat(100) }),
    );
    await writeFile(path.join(dir, 'big.ndjson'), `${lines.join('\n')}\n`);
    const args = ['drops', '--source', source, '--dir', dir, '--key', 'id', '--time', 'at', '--once', '--settle', '0'];
    const child = spawn(BIN, [...args, '--chunk', '2000'], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    // Killed as soon as the first chunk is committed.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const [row] = await manifestRows(pool, source);
      if ((row && row.records_done > 0) || Date.now() > deadline) break;
      await sleep(5);
    }
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const [killedAt] = await manifestRows(pool, source);
    expect(killedAt!.records_done).toBeGreaterThan(0);
    expect(killedAt!.records_done).toBeLessThan(total);
    expect(killedAt!.processed_at).toBeNull();
    const before = await counts(pool, source);
    // The progress moves with the events it covers: no more, no fewer.
    expect(before.events).toBe(killedAt!.records_done);

    const rerun = await runCli([...args, '--chunk', '2000']);
    expect(rerun.stderr).toBe('');
    expect(rerun.code).toBe(0);
    expect(rerun.stdout).toContain(
      `big.ndjson: ${total} record(s): ${total - killedAt!.records_done} new, 0 duplicate, resumed after record ${killedAt!.records_done}`,
    );
    expect(await counts(pool, source)).toEqual({ events: total, outbox: total, distinct: total });
    expect(await manifestRows(pool, source)).toMatchObject([{ records: total, records_done: total }]);
  });

  it('on SIGTERM stops before the next chunk, says where, exits 1; the rerun finishes', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const total = 20_000;
    await writeFile(path.join(dir, 'big.ndjson'), Array.from({ length: total }, (_, i) => `{"id":${i}}`).join('\n'));
    const args = ['drops', '--source', source, '--dir', dir, '--once', '--settle', '0', '--chunk', '500'];
    const { child, result } = startCli(args);
    while (((await manifestRows(pool, source))[0]?.records_done ?? 0) === 0) await sleep(5);
    child.kill('SIGTERM');
    const { code, stdout, stderr } = await result;
    expect(code).toBe(1);
    const [stoppedAt] = await manifestRows(pool, source);
    expect(stoppedAt!.records_done).toBeLessThan(total);
    expect(stdout).toContain(`big.ndjson: stopped after record ${stoppedAt!.records_done} of ${total} (committed;`);
    expect(stderr).toContain('stopped on a signal before the end of the pass; a rerun resumes');
    expect((await counts(pool, source)).events).toBe(stoppedAt!.records_done);
    const rerun = await runCli(args);
    expect(rerun.code).toBe(0);
    expect(await counts(pool, source)).toEqual({ events: total, outbox: total, distinct: total });
  });

  it('prints one line per file and a summary; a re-dropped file is reported skipped; exit 0', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, 'a.csv'), 'id,v\n1,x\n2,y\n');
    await writeFile(path.join(dir, 'b.csv'), 'id,v\n1,x\n2,y\n');
    await writeFile(path.join(dir, 'readme.txt'), 'not data');
    await mkdir(path.join(dir, 'nested'));
    await writeFile(path.join(dir, 'nested', 'c.csv'), 'id\n3\n');
    const result = await runCli(['drops', '--source', source, '--dir', dir, '--once', '--settle', '0']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const out = result.stdout.split('\n');
    expect(out[0]).toMatch(/^a\.csv: 2 record\(s\): 2 new, 0 duplicate \(sha256 [0-9a-f]{12}\)$/);
    expect(out[1]).toMatch(/^b\.csv: skipped: its content was already processed \(as a\.csv, \d{4}-.*Z\)$/);
    expect(out[2]).toBe('readme.txt: not .csv, .json, .ndjson, .jsonl or .parquet; left alone');
    expect(out[3]).toBe(
      `drops ${source}: 1 file(s) ingested (2 new event(s)), 1 already processed, 0 refused, 0 still being written`,
    );
    expect(await counts(pool, source)).toEqual({ events: 2, outbox: 2, distinct: 2 });
  });

  it('exits 1 naming the file, line and problem for a malformed file, and writes nothing of it', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    await writeFile(path.join(dir, 'orders.csv'), 'id,amount\n1,10\n2,20,oops\n');
    const result = await runCli(['drops', '--source', source, '--dir', dir, '--once', '--settle', '0']);
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      'conveyor drops: refused orders.csv: line 3 (record 2): 3 field(s) where the header has 2; nothing of it was written\n',
    );
    expect(result.stdout).toContain('0 file(s) ingested (0 new event(s)), 0 already processed, 1 refused');
    expect(await counts(pool, source)).toEqual({ events: 0, outbox: 0, distinct: 0 });
    expect(await manifestRows(pool, source)).toEqual([]);
  });

  it('exits 2 for bad usage, naming it', async () => {
    const dir = await dropsDir();
    const cases: Array<[string[], string]> = [
      [['--source', 's', '--dir', dir], 'give one of --once or --watch <interval>'],
      [['--source', 's', '--dir', dir, '--once', '--watch', '1s'], 'give one of --once or --watch <interval>'],
      [['--source', 'no spaces', '--dir', dir, '--once'], '--source: "no spaces" may contain only letters'],
      [['--source', 's', '--dir', path.join(dir, 'missing'), '--once'], 'is not a folder'],
    ];
    for (const [args, message] of cases) {
      const result = await runCli(['drops', ...args]);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr).toContain(message);
    }
    const badFormat = await runCli(['drops', '--source', 's', '--dir', dir, '--once', '--format', 'xml']);
    expect(badFormat.code).not.toBe(0);
    expect(badFormat.stderr).toContain("argument 'xml' is invalid");
  });
});

describe('conveyor drops --watch', () => {
  it('takes in files dropped while it runs, each once, and exits 0 on SIGTERM', async () => {
    const dir = await dropsDir();
    const source = dropSource();
    const child = spawn(BIN, ['drops', '--source', source, '--dir', dir, '--watch', '100ms', '--settle', '50']);
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const waitFor = async (events: number) => {
      const deadline = Date.now() + 30_000;
      while ((await counts(pool, source)).events < events && Date.now() < deadline) await sleep(50);
    };
    await writeFile(path.join(dir, 'one.ndjson'), '{"id":1}\n{"id":2}\n');
    await waitFor(2);
    await writeFile(path.join(dir, 'two.json'), '[{"id":3}]');
    await waitFor(3);
    // A few more passes over the same files.
    await sleep(400);
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(await counts(pool, source)).toEqual({ events: 3, outbox: 3, distinct: 3 });
    expect(stdout.match(/one\.ndjson/g)).toHaveLength(1);
    expect(stdout.match(/two\.json/g)).toHaveLength(1);
  });
});
