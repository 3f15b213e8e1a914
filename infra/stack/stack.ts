import fs from 'node:fs';
import path from 'node:path';
import { conveyorHome, portSetting, redactUrl, setting } from '../../libs/config/index.ts';
import { ensureDatabase } from '../../libs/db/index.ts';
import { kafkaPart } from './kafka.ts';
import { embeddedPostgresPart, postgresAnswers } from './postgres.ts';
import {
  isOurProcess,
  portInUse,
  readPid,
  requireJava,
  requireMaven,
  StackError,
  spawnDetached,
  stopProcess,
  tail,
  waitFor,
  writePid,
} from './processes.ts';
import { registryPart } from './registry.ts';
import type { Progress, StackPart } from './types.ts';

export { StackError };

export interface StackLayout {
  home: string;
  logsDir: string;
  pidsDir: string;
  databaseUrl: string;
  parts: StackPart[];
}

/** The stack as configured by the environment. Postgres is a part only when no server answers. */
export async function stackLayout(env: NodeJS.ProcessEnv = process.env): Promise<StackLayout> {
  const home = path.join(conveyorHome(env), 'stack');
  const databaseUrl = setting('DATABASE_URL', env);
  const parts: StackPart[] = [];
  const pidsDir = path.join(home, 'pids');
  const embeddedRecorded = readPid(path.join(pidsDir, 'postgres.json')) !== undefined;
  if (embeddedRecorded || !(await postgresAnswers(databaseUrl))) {
    parts.push(embeddedPostgresPart(home, new URL(databaseUrl)));
  }
  parts.push(kafkaPart(home, portSetting('KAFKA_PORT', env)));
  parts.push(registryPart(home, portSetting('SCHEMA_REGISTRY_PORT', env), databaseUrl));
  return { home, logsDir: path.join(home, 'logs'), pidsDir, databaseUrl, parts };
}

export function logFileOf(layout: StackLayout, part: string): string {
  return path.join(layout.logsDir, `${part}.log`);
}

function pidFileOf(layout: StackLayout, part: string): string {
  return path.join(layout.pidsDir, `${part}.json`);
}

export type PartState =
  | { state: 'running'; pid: number; healthy: boolean }
  | { state: 'stopped' }
  | { state: 'stale'; pid: number };

export async function partState(layout: StackLayout, part: StackPart): Promise<PartState> {
  const record = readPid(pidFileOf(layout, part.name));
  if (!record) return { state: 'stopped' };
  if (!isOurProcess(record)) return { state: 'stale', pid: record.pid };
  return { state: 'running', pid: record.pid, healthy: await part.healthy().catch(() => false) };
}

function requirementsOf(parts: StackPart[]): void {
  const needs = new Set(parts.flatMap((p) => p.needs));
  if (needs.has('java')) requireJava(17);
  if (needs.has('maven')) requireMaven();
}

/** Starts every part that is not running, waits for each to be healthy, and returns the env to use. */
export async function stackUp(layout: StackLayout, progress: Progress): Promise<Record<string, string>> {
  const toStart: StackPart[] = [];
  for (const part of layout.parts) {
    const state = await partState(layout, part);
    if (state.state === 'running') {
      progress(`${part.name.padEnd(9)} already running (pid ${state.pid}, ${part.address})`);
      if (!state.healthy && !(await waitFor(part.healthy, { timeoutMs: part.startTimeoutMs }))) {
        throw new StackError(
          `${part.name} (pid ${state.pid}) is running but not healthy; see \`conveyor stack logs ${part.name}\``,
        );
      }
      continue;
    }
    for (const port of part.ports) {
      if (await portInUse(port)) {
        throw new StackError(
          `port ${port} needed by ${part.name} is already in use by another process; stop it or choose another port (see README, local stack)`,
        );
      }
    }
    toStart.push(part);
  }
  if (toStart.length > 0) requirementsOf(toStart);

  for (const part of toStart) {
    const started = Date.now();
    const say: Progress = (message) => progress(`${part.name.padEnd(9)} ${message}`);
    await part.install(say);
    await part.prepare(say);
    const { command, args, env, uid, gid } = part.command();
    const logFile = logFileOf(layout, part.name);
    fs.mkdirSync(layout.logsDir, { recursive: true });
    fs.appendFileSync(logFile, `\n==== conveyor stack up ${new Date().toISOString()} ====\n`);
    if (uid !== undefined) fs.chownSync(logFile, uid, gid ?? uid);
    say('starting');
    const pid = spawnDetached(command, args, { logFile, env, uid, gid });
    writePid(pidFileOf(layout, part.name), {
      pid,
      ports: part.ports,
      startedAt: new Date().toISOString(),
      command: part.processMarker,
    });
    const ok = await waitFor(part.healthy, {
      timeoutMs: part.startTimeoutMs,
      stillAlive: () => isOurProcess({ pid, ports: [], startedAt: '', command: part.processMarker }),
    });
    if (!ok) {
      await stopProcess(pid, 5000);
      fs.rmSync(pidFileOf(layout, part.name), { force: true });
      throw new StackError(
        `${part.name} did not become healthy within ${part.startTimeoutMs / 1000}s. Last lines of ${logFile}:\n${tail(logFile, 25)}`,
      );
    }
    await part.afterStart?.();
    say(`healthy in ${((Date.now() - started) / 1000).toFixed(1)}s (pid ${pid}, ${part.address})`);
  }

  await ensureDatabase(layout.databaseUrl);
  const env: Record<string, string> = { DATABASE_URL: layout.databaseUrl };
  for (const part of layout.parts) Object.assign(env, part.env);
  return env;
}

/** Stops the processes `stack up` recorded, newest part first; data stays unless purge. */
export async function stackDown(layout: StackLayout, progress: Progress, options: { purge: boolean }): Promise<void> {
  for (const part of [...layout.parts].reverse()) {
    const file = pidFileOf(layout, part.name);
    const record = readPid(file);
    if (!record) {
      progress(`${part.name.padEnd(9)} not started by conveyor`);
    } else if (!isOurProcess(record)) {
      progress(`${part.name.padEnd(9)} not running (stale pid ${record.pid} forgotten)`);
    } else {
      const how = await stopProcess(record.pid);
      progress(`${part.name.padEnd(9)} ${how} (pid ${record.pid})`);
    }
    fs.rmSync(file, { force: true });
    if (options.purge) {
      for (const dir of part.dataDirs) fs.rmSync(dir, { recursive: true, force: true });
      progress(`${part.name.padEnd(9)} data removed`);
    }
  }
}

export function describeDatabase(url: string): string {
  return redactUrl(url);
}
