import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export class StackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StackError';
  }
}

/** What `stack up` records for a process it started, so `stack down` stops only its own. */
export interface PidRecord {
  pid: number;
  ports: number[];
  startedAt: string;
  command: string;
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when pid is alive and its command line still contains marker (guards against pid reuse). */
export function isOurProcess(record: PidRecord): boolean {
  if (!isAlive(record.pid)) return false;
  try {
    const cmdline = fs.readFileSync(`/proc/${record.pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
    return cmdline.includes(record.command);
  } catch {
    return true; // no procfs (macOS): trust the pid
  }
}

export function readPid(file: string): PidRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as PidRecord;
  } catch {
    return undefined;
  }
}

export function writePid(file: string, record: PidRecord): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `${JSON.stringify(record)}\n`);
}

/** True when something accepts connections on 127.0.0.1:port. */
export function portInUse(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Starts a long-running process detached from this one, output appended to logFile. */
export function spawnDetached(
  command: string,
  args: string[],
  options: { logFile: string; cwd?: string; env?: NodeJS.ProcessEnv; uid?: number; gid?: number },
): number {
  fs.mkdirSync(path.dirname(options.logFile), { recursive: true });
  const out = fs.openSync(options.logFile, 'a');
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    detached: true,
    uid: options.uid,
    gid: options.gid,
    stdio: ['ignore', out, out],
  });
  fs.closeSync(out);
  if (child.pid === undefined) throw new StackError(`could not start ${command}`);
  child.unref();
  return child.pid;
}

/** Runs a command to completion; throws with its output's tail when it fails. */
export function runOrThrow(command: string, args: string[], what: string, cwd?: string): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (result.error) throw new StackError(`${what}: ${result.error.message}`);
  if (result.status !== 0) {
    const output = `${result.stdout ?? ''}${result.stderr ?? ''}`.trim().split('\n').slice(-20).join('\n');
    throw new StackError(`${what} failed (exit ${result.status}):\n${output}`);
  }
  return `${result.stdout ?? ''}${result.stderr ?? ''}`;
}

/** Major version of the java on PATH, or undefined when there is none. */
export function javaMajorVersion(): number | undefined {
  const result = spawnSync('java', ['-version'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) return undefined;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(result.stderr);
  if (!match) return undefined;
  const major = Number(match[1]);
  return major === 1 ? Number(match[2]) : major;
}

export function requireJava(minimum: number): void {
  const major = javaMajorVersion();
  if (major === undefined) {
    throw new StackError(
      `Java ${minimum}+ was not found on PATH; install a JDK (e.g. apt-get install openjdk-${minimum}-jdk-headless)`,
    );
  }
  if (major < minimum) throw new StackError(`Java ${minimum}+ is required, found Java ${major} on PATH`);
}

export function requireMaven(): void {
  const result = spawnSync('mvn', ['-v'], { encoding: 'utf8' });
  if (result.error || result.status !== 0) {
    throw new StackError('Apache Maven (mvn) was not found on PATH; install it (e.g. apt-get install maven)');
  }
}

export async function waitFor(
  check: () => Promise<boolean>,
  options: { timeoutMs: number; intervalMs?: number; stillAlive?: () => boolean },
): Promise<boolean> {
  const deadline = Date.now() + options.timeoutMs;
  while (Date.now() < deadline) {
    if (await check().catch(() => false)) return true;
    if (options.stillAlive && !options.stillAlive()) return false;
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 500));
  }
  return false;
}

export function tail(file: string, lines: number): string {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log yet)';
  }
}

/** Sends SIGTERM, waits, then SIGKILL; resolves once the process is gone. */
export async function stopProcess(pid: number, graceMs = 20_000): Promise<'stopped' | 'killed' | 'not running'> {
  if (!isAlive(pid)) return 'not running';
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return 'not running';
  }
  if (await waitFor(async () => !isAlive(pid), { timeoutMs: graceMs, intervalMs: 200 })) return 'stopped';
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // exited between the check and the kill
  }
  await waitFor(async () => !isAlive(pid), { timeoutMs: 5000, intervalMs: 100 });
  return 'killed';
}
