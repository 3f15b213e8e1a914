import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

// A module preloaded through NODE_OPTIONS reports what node was started with.
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-flags-'));
const probe = path.join(dir, 'probe.cjs');
fs.writeFileSync(
  probe,
  "process.on('exit', () => process.stderr.write(`execArgv=${JSON.stringify(process.execArgv)}\\n`));\n",
);
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

async function nodeFlags(args: string[], nodeOptions = ''): Promise<string[]> {
  const { code, stderr } = await runCli(args, { NODE_OPTIONS: `--require ${probe} ${nodeOptions}` });
  expect(code, stderr).toBe(0);
  return JSON.parse(/execArgv=(.*)/.exec(stderr)?.[1] ?? 'null') as string[];
}

describe('the conveyor launcher', () => {
  it('starts the sink with a small young generation and one V8 helper thread, other commands with node as it is', async () => {
    expect(await nodeFlags(['sink', '--help'])).toEqual(['--max-semi-space-size=4', '--v8-pool-size=1']);
    expect(await nodeFlags(['relay', '--help'])).toEqual([]);
    expect(await nodeFlags(['--help'])).toEqual([]);
  });

  it("leaves each flag to the user's NODE_OPTIONS when they set it", async () => {
    expect(await nodeFlags(['sink', '--help'], '--max-semi-space-size=8')).toEqual(['--v8-pool-size=1']);
    expect(await nodeFlags(['sink', '--help'], '--v8-pool-size=2')).toEqual(['--max-semi-space-size=4']);
    expect(await nodeFlags(['sink', '--help'], '--v8-pool-size=2 --max-semi-space-size=8')).toEqual([]);
  });

  it('runs from a link to it, as node_modules/.bin/conveyor is', async () => {
    const link = path.join(dir, 'conveyor');
    fs.symlinkSync(path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor'), link);
    const { code, stdout } = await runCli(['--help'], {}, 60_000, link);
    expect(code).toBe(0);
    expect(stdout).toContain('Usage: conveyor');
  });
});
