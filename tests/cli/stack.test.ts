import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

function listen(): Promise<net.Server> {
  return new Promise((resolve) => {
    const server = net.createServer((socket) => socket.destroy());
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

describe('conveyor stack', () => {
  let blocker: net.Server;
  let home: string;

  beforeAll(async () => {
    blocker = await listen();
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-stack-'));
  });
  afterAll(() => {
    blocker.close();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('refuses to start when the Kafka port is taken, naming the port, and starts nothing', async () => {
    const port = (blocker.address() as net.AddressInfo).port;
    const result = await runCli(['stack', 'up'], { CONVEYOR_HOME: home, KAFKA_PORT: String(port) });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`port ${port}`);
    expect(result.stderr).toContain('kafka');
    expect(fs.existsSync(path.join(home, 'stack', 'pids', 'kafka.json'))).toBe(false);
  });

  it('status reports the running stack as healthy', async () => {
    const result = await runCli(['stack', 'status']);
    expect(result.stdout).toMatch(/kafka\s+pid \d+\s+127\.0\.0\.1:\d+\s+healthy/);
    expect(result.stdout).toMatch(/registry\s+pid \d+\s+127\.0\.0\.1:\d+\s+healthy/);
    expect(result.code).toBe(0);
  });

  it('every command answers --help', async () => {
    for (const args of [['--help'], ['stack', 'up', '--help'], ['stack', 'logs', '--help'], ['migrate', '--help']]) {
      const result = await runCli(args);
      expect(result.code, args.join(' ')).toBe(0);
      expect(result.stdout).toContain('Usage: conveyor');
    }
  });

  it('rejects an invalid port setting with a message naming the setting', async () => {
    const result = await runCli(['stack', 'up'], { CONVEYOR_HOME: home, KAFKA_PORT: 'ninety' });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('KAFKA_PORT');
  });
});
