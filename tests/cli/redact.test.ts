import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-redact-'));
afterAll(() => fs.rmSync(home, { recursive: true, force: true }));

describe('a password in the query string of DATABASE_URL', () => {
  const base = new URL(process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/conveyor');
  base.searchParams.set('password', 'SECRETPW');

  it('is not printed by `stack status`', async () => {
    const result = await runCli(['stack', 'status'], { DATABASE_URL: base.toString(), CONVEYOR_HOME: home });
    expect(result.stdout).toContain('postgres');
    expect(result.stdout + result.stderr).not.toContain('SECRETPW');
  });

  it('is not printed by `migrate`', async () => {
    const url = new URL(base);
    url.pathname = `/${process.env.CONVEYOR_TEST_DATABASE ?? 'conveyor_test'}`;
    const result = await runCli(['migrate'], { DATABASE_URL: url.toString(), CONVEYOR_HOME: home });
    expect(result.stdout + result.stderr).toContain('password=***');
    expect(result.stdout + result.stderr).not.toContain('SECRETPW');
  });
});

describe('a password in SCHEMA_REGISTRY_URL', () => {
  it('is not printed when the registry cannot be reached', async () => {
    const closed = net.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const result = await runCli(['schema', 'check', '--source', 'github'], {
      SCHEMA_REGISTRY_URL: `http://user:SECRETPW@127.0.0.1:${port}/apis/ccompat/v7`,
      CONVEYOR_HOME: home,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`127.0.0.1:${port}`);
    expect(result.stderr).toContain('ECONNREFUSED');
    expect(result.stdout + result.stderr).not.toContain('SECRETPW');
  });
});
