import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectPath } from '../../libs/config/index.ts';
import { runCli } from './run-cli.ts';

const BUNDLE = projectPath('.build', 'conveyor.mjs');

describe('the CLI bundle', () => {
  it('is rebuilt when a source file is newer, and not otherwise', async () => {
    expect((await runCli(['--help'])).code).toBe(0);
    const built = fs.statSync(BUNDLE).mtimeMs;
    expect((await runCli(['--help'])).code).toBe(0);
    expect(fs.statSync(BUNDLE).mtimeMs).toBe(built);

    // An edit (here only its time) to any source the CLI is made of.
    const source = projectPath('libs', 'lake', 'event.ts');
    const later = new Date(built + 2000);
    fs.utimesSync(source, later, later);
    expect((await runCli(['--help'])).code).toBe(0);
    expect(fs.statSync(BUNDLE).mtimeMs).toBeGreaterThan(built);
  });

  it('has source maps back to the TypeScript files, so stack traces name them', () => {
    const dir = path.dirname(BUNDLE);
    const sources = fs
      .readdirSync(dir)
      .filter((f) => f.endsWith('.mjs.map'))
      .flatMap((f) => (JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { sources: string[] }).sources);
    expect(sources).toContain('../libs/lake/event.ts');
    expect(sources).toContain('../services/cli/src/main.ts');
    expect(fs.readFileSync(BUNDLE, 'utf8')).toMatch(/\/\/# sourceMappingURL=conveyor\.mjs\.map\s*$/);
  });

  it("loads each command's packages only when it runs: the entry imports none of the webhook, puller or DuckDB ones", () => {
    const entryImports = [...fs.readFileSync(BUNDLE, 'utf8').matchAll(/^import [^;]*? from "([^".][^"]*)";/gms)].map(
      (m) => m[1],
    );
    expect(entryImports).toContain('commander');
    for (const lazy of [
      'ajv',
      'undici',
      'yaml',
      'cli-progress',
      'standardwebhooks',
      '@duckdb/node-api',
      'hyparquet-writer',
    ]) {
      expect(entryImports).not.toContain(lazy);
    }
  });

  it('finds the project folders from the bundle (here: the migrations)', async () => {
    const result = await runCli(['migrate']);
    expect(result.code, result.stderr).toBe(0);
  });
});
