import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-verify-memory-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('verify --memory', () => {
  it.each(['banana', '12', '0MB', '-1GB', '1PB'])('"%s" is refused, naming the option and the form', async (value) => {
    const result = await runCli(['verify', '--memory', value, '--output', tmp], { TMPDIR: tmp }, 30_000);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`option '--memory <size>' argument '${value}' is invalid`);
    expect(result.stderr).toContain('expected a size such as 512MB, 2GB or 1.5GiB');
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('conveyor-verify-'))).toEqual([]);
  });
});
