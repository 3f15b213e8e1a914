import fs from 'node:fs';
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

  it('has a source map back to the TypeScript files, so stack traces name them', () => {
    const map = JSON.parse(fs.readFileSync(`${BUNDLE}.map`, 'utf8')) as { sources: string[] };
    expect(map.sources).toContain('../libs/lake/event.ts');
    expect(fs.readFileSync(BUNDLE, 'utf8')).toMatch(/\/\/# sourceMappingURL=conveyor\.mjs\.map\s*$/);
  });

  it('finds the project folders from the bundle (here: the migrations)', async () => {
    const result = await runCli(['migrate']);
    expect(result.code, result.stderr).toBe(0);
  });
});
