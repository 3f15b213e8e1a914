import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-stack-logs-'));
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe('stack logs --lines', () => {
  it.each(['abc', '-3', '0', '2.5'])('-n "%s" is refused, naming --lines', async (value) => {
    const result = await runCli(['stack', 'logs', 'kafka', '-n', value], { CONVEYOR_HOME: home }, 30_000);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`option '-n, --lines <n>' argument '${value}' is invalid`);
    expect(result.stderr).toContain('expected a whole number >= 1');
  });

  it('-n 2 prints the last two lines', async () => {
    const logs = path.join(home, 'stack', 'logs');
    fs.mkdirSync(logs, { recursive: true });
    fs.writeFileSync(path.join(logs, 'kafka.log'), 'one\ntwo\nthree\nfour\n');
    const result = await runCli(['stack', 'logs', 'kafka', '-n', '2'], { CONVEYOR_HOME: home }, 30_000);
    expect(result.stderr).toBe('');
    expect(result.stdout.trim().split('\n')).toEqual(['three', 'four']);
    expect(result.code).toBe(0);
  });
});
