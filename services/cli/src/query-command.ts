import type { Command } from 'commander';

function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'object'
    ? JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? String(v) : v))
    : String(value);
}

/** `conveyor query`: DuckDB over the lake's files, for users without the duckdb CLI. */
export function registerQueryCommand(program: Command): void {
  program
    .command('query')
    .description(
      "Run a DuckDB SQL query (e.g. over the lake: read_json_auto('<lake>/bronze/**/*.jsonl'), read_parquet('<lake>/silver/...')) and print the rows.",
    )
    .argument('<sql>', 'the query')
    .option('--json', 'one JSON object per row')
    .option('--max-width <n>', 'cut longer cells to this many characters in the table', '60')
    .action(async (sql: string, options: { json?: boolean; maxWidth: string }) => {
      const width = Number(options.maxWidth);
      if (!Number.isInteger(width) || width < 4)
        throw new Error(`--max-width: expected a number >= 4, got "${options.maxWidth}"`);
      // Loaded when used: DuckDB's library adds about 30 MB to every process that imports it.
      const { DuckDBInstance } = await import('@duckdb/node-api');
      const instance = await DuckDBInstance.create(':memory:');
      const connection = await instance.connect();
      try {
        const result = await connection.runAndReadAll(sql);
        const names = result.columnNames();
        const rows = result.getRowsJS().map((row) => row.map(cell));
        if (options.json) {
          for (const row of rows)
            process.stdout.write(`${JSON.stringify(Object.fromEntries(names.map((n, i) => [n, row[i]])))}\n`);
          return;
        }
        const shown = rows.map((row) => row.map((c) => (c.length > width ? `${c.slice(0, width - 1)}…` : c)));
        const widths = names.map((n, i) => Math.max(n.length, ...shown.map((r) => r[i]!.length)));
        const line = (cells: string[]) =>
          cells
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd();
        process.stdout.write(`${line(names)}\n${line(widths.map((w) => '-'.repeat(w)))}\n`);
        for (const row of shown) process.stdout.write(`${line(row)}\n`);
        process.stdout.write(`(${rows.length} row${rows.length === 1 ? '' : 's'})\n`);
      } finally {
        connection.closeSync();
        instance.closeSync();
      }
    });
}
