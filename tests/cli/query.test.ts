import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

describe('conveyor query', () => {
  it('runs DuckDB SQL over files and prints a table, or JSON lines', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'conveyor-query-'));
    const file = path.join(dir, 'part.jsonl');
    await writeFile(file, '{"source":"a","n":1}\n{"source":"a","n":2}\n{"source":"b","n":5}\n');
    const sql = `SELECT source, sum(n) AS total FROM read_json_auto('${file}') GROUP BY ALL ORDER BY ALL`;

    const table = await runCli(['query', sql]);
    expect(table.code).toBe(0);
    expect(table.stdout.split('\n').slice(0, 4)).toEqual(['source  total', '------  -----', 'a       3', 'b       5']);

    const json = await runCli(['query', '--json', sql]);
    expect(
      json.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([
      { source: 'a', total: '3' },
      { source: 'b', total: '5' },
    ]);
  });

  it('names the problem in a bad query and exits 1', async () => {
    const result = await runCli(['query', 'SELEC 1']);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('syntax error at or near "SELEC"');
  });
});
