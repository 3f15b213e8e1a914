import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { projectPath } from '../../libs/config/index.ts';

// The launcher, as users start it: it gives node the flags a command needs.
const CLI = projectPath('services', 'cli', 'bin', 'conveyor');

/** A free TCP port on 127.0.0.1, so the demo's services never collide with anything already running. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Sum of every sample of a Prometheus metric in a text exposition. */
export function metricSum(exposition: string, name: string): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (Number.isFinite(value)) sum += value;
  }
  return sum;
}

/**
 * One of the pipeline's processes (`conveyor webhook|relay|sink`) run as a real child process, so the
 * fault drill can SIGKILL it exactly as an OOM killer or a node failure would. Counters read from its
 * /metrics are carried across restarts: a process killed with -9 keeps what was last read from it.
 */
export class ServiceProcess {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private carried = new Map<string, number>();
  private current = new Map<string, number>();
  kills = 0;

  constructor(
    readonly name: 'webhook' | 'relay' | 'sink',
    readonly port: number,
    private readonly env: NodeJS.ProcessEnv,
    private readonly logFile: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(timeoutMs = 60_000): Promise<void> {
    fs.mkdirSync(path.dirname(this.logFile), { recursive: true });
    const log = fs.openSync(this.logFile, 'a');
    const child = spawn(CLI, [this.name], { env: this.env, stdio: ['ignore', log, log] });
    fs.closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`${this.name} exited during start (code ${child.exitCode}); see ${this.logFile}`);
      }
      const ready = await request(`${this.url}/readyz`)
        .then(async (r) => {
          await r.body.dump();
          return r.statusCode === 200;
        })
        .catch(() => false);
      if (ready) return;
      if (Date.now() > deadline) throw new Error(`${this.name} not ready after ${timeoutMs} ms; see ${this.logFile}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** SIGKILL: no flush, no commit, no goodbye. */
  async kill9(): Promise<void> {
    // Read the counters first, so the report counts what this life did up to the kill.
    await this.scrape([...this.current.keys()]).catch(() => undefined);
    this.child?.kill('SIGKILL');
    await this.exited;
    this.kills += 1;
    for (const [name, value] of this.current) this.carried.set(name, (this.carried.get(name) ?? 0) + value);
    this.current.clear();
  }

  /** SIGTERM and wait: the services finish in-flight work and commit before they exit. */
  async stop(graceMs = 30_000): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await this.scrape([...this.current.keys()]).catch(() => undefined);
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  /** Reads counters from /metrics; returns each one's total over every life of this service. */
  async scrape(names: string[]): Promise<Record<string, number>> {
    const answer = await request(`${this.url}/metrics`).catch(() => undefined);
    if (answer?.statusCode === 200) {
      const text = await answer.body.text();
      for (const name of names) this.current.set(name, metricSum(text, name));
    } else {
      await answer?.body.dump();
    }
    return this.counters(names);
  }

  counters(names: string[]): Record<string, number> {
    return Object.fromEntries(
      names.map((n) => [n, (this.carried.get(n) ?? 0) + (this.current.get(n) ?? 0)] as [string, number]),
    );
  }
}
