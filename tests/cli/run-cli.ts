import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `conveyor <args>` as a user would, in its own process; `result` resolves when it has exited. */
export function startCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  command = BIN,
): { child: ChildProcess; output: () => Omit<CliResult, 'code'>; result: Promise<CliResult> } {
  // The launcher, as npx runs it (it gives node the flags a command needs).
  const child = spawn(command, args, { env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const result = new Promise<CliResult>((resolve) => {
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { child, output: () => ({ stdout, stderr }), result };
}

/** Runs `conveyor <args>` to its end; after `timeoutMs` it is killed and the promise rejects at once. */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 120_000,
  command = BIN,
): Promise<CliResult> {
  const { child, output, result } = startCli(args, env, command);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      const { stdout, stderr } = output();
      reject(new Error(`conveyor ${args.join(' ')} did not finish in ${timeoutMs} ms:\n${stdout}\n${stderr}`));
    }, timeoutMs);
    void result.then((done) => {
      clearTimeout(timer);
      resolve(done);
    });
  });
}
