import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { runCli } from '../cli/run-cli.ts';
import { testPool } from '../helpers/real-stack.ts';
import { changeFeedDefinition, definitionsDir, eventIds, outboxCounts } from './helpers.ts';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor.mjs');

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({ items: 1000 });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

/** Keeps built-in sources pointed at the simulator, so no test talks to the internet. */
const env = (dir: string) => ({
  CONVEYOR_SOURCES_DIR: dir,
  PULL_LEASE_SECONDS: '2',
  GITHUB_API_URL: sim.url,
  GENERIC_API_URL: sim.url,
});

describe('conveyor pull --once', () => {
  it('survives kill -9 mid-run: the rerun resumes with no gap and no duplicate outbox row', async () => {
    const raw = changeFeedDefinition(sim.url, {
      request: { base_url: sim.url, path: '/api/changes', params: { limit: 20 } },
    });
    const dir = await definitionsDir(raw);
    sim.faults.slowMs = 15;
    sim.resetStats();
    const child = spawn(process.execPath, [BIN, 'pull', '--source', String(raw.name), '--once', '--quiet'], {
      env: { ...process.env, ...env(dir) },
      stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    while (sim.stats.requests < 15) await new Promise((resolve) => setTimeout(resolve, 20));
    child.kill('SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const before = (await eventIds(pool, String(raw.name))).length;
    expect(before).toBeGreaterThan(0);
    expect(before).toBeLessThan(1000);
    delete sim.faults.slowMs;

    const rerun = await runCli(['pull', '--source', String(raw.name), '--once', '--wait-lease', '20'], env(dir));
    expect(rerun.stderr).not.toMatch(/failed/);
    expect(rerun.code).toBe(0);
    const ids = await eventIds(pool, String(raw.name));
    expect(ids).toHaveLength(1000);
    expect(await outboxCounts(pool, String(raw.name))).toEqual({ rows: 1000, distinct: 1000 });
    // Resumed, not restarted: together both runs asked for about one pass of the 50 pages.
    expect(sim.stats.requests).toBeLessThanOrEqual(50 + 3);
  });

  it('two processes on one source: one runs, the other waits; runs never overlap', async () => {
    const raw = changeFeedDefinition(sim.url);
    const dir = await definitionsDir(raw);
    sim.faults.slowMs = 5;
    const args = ['pull', '--source', String(raw.name), '--once', '--wait-lease', '60', '--quiet'];
    const [a, b] = await Promise.all([runCli(args, env(dir)), runCli(args, env(dir))]);
    delete sim.faults.slowMs;
    expect([a.code, b.code]).toEqual([0, 0]);
    const { rows } = await pool.query<{ started_at: Date; finished_at: Date; status: string }>(
      'SELECT started_at, finished_at, status FROM pull_runs WHERE source = $1 ORDER BY started_at',
      [raw.name],
    );
    expect(rows.map((r) => r.status)).toEqual(['succeeded', 'succeeded']);
    expect(rows[1]!.started_at.getTime()).toBeGreaterThanOrEqual(rows[0]!.finished_at.getTime());
    expect(await outboxCounts(pool, String(raw.name))).toEqual({ rows: sim.items.size, distinct: sim.items.size });
  });

  it('exits 3 when another process holds the lease and --wait-lease is 0', async () => {
    const raw = changeFeedDefinition(sim.url);
    const dir = await definitionsDir(raw);
    await pool.query(
      `INSERT INTO pull_leases (source, owner, expires_at) VALUES ($1, 'elsewhere:1', clock_timestamp() + interval '1 minute')`,
      [raw.name],
    );
    const result = await runCli(['pull', '--source', String(raw.name), '--once'], env(dir));
    expect(result.code).toBe(3);
    expect(result.stderr).toContain(`source ${raw.name} is already being pulled by elsewhere:1`);
  });

  it('exits 2 naming the problem for an unknown source or an invalid definition', async () => {
    const raw = changeFeedDefinition(sim.url);
    const dir = await definitionsDir(raw);
    const unknown = await runCli(['pull', '--source', 'no-such-source', '--once'], env(dir));
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown source "no-such-source"');

    await writeFile(path.join(dir, 'broken.yaml'), 'name: broken\nrequest: { base_url: "not a url" }\n');
    const invalid = await runCli(['pull', '--source', String(raw.name), '--once'], env(dir));
    expect(invalid.code).toBe(2);
    expect(invalid.stderr).toContain(
      `${path.join(dir, 'broken.yaml')}: request.base_url: must be an absolute http(s) URL`,
    );
  });

  it('exits 1 with the reason when the API refuses, and does not move the checkpoint', async () => {
    const raw = changeFeedDefinition(sim.url, { auth: { type: 'bearer', token_env: 'FEED_TOKEN' } });
    const dir = await definitionsDir(raw);
    sim.faults.token = 'right-token';
    try {
      const result = await runCli(['pull', '--source', String(raw.name), '--once'], {
        ...env(dir),
        FEED_TOKEN: 'wrong-token',
      });
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('answered 401: {"message":"Bad credentials"}');
      expect(result.stderr + result.stdout).not.toContain('wrong-token');
      const missing = await runCli(['pull', '--source', String(raw.name), '--once'], env(dir));
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('auth.token_env: environment variable FEED_TOKEN is not set');
    } finally {
      delete sim.faults.token;
    }
    const { rowCount } = await pool.query('SELECT 1 FROM pull_checkpoints WHERE source = $1', [raw.name]);
    expect(rowCount).toBe(0);
  });
});

describe('conveyor pull --all', () => {
  it('runs each source PULL_SOURCES names on its interval until SIGTERM, then exits 0', async () => {
    const raw = changeFeedDefinition(sim.url, { schedule: { every: '500ms', jitter: '100ms' } });
    const dir = await definitionsDir(raw);
    const child = spawn(process.execPath, [BIN, 'pull', '--all'], {
      env: { ...process.env, ...env(dir), PULL_SOURCES: ` ${raw.name}, ,${raw.name}` },
    });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 30_000;
    for (;;) {
      const { rows } = await pool.query<{ n: string }>(
        "SELECT count(*) AS n FROM pull_runs WHERE source = $1 AND status = 'succeeded'",
        [raw.name],
      );
      if (Number(rows[0]!.n) >= 3 || Date.now() > deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // Only the named source: not the built-ins (GitHub, the simulator's feed).
    expect(stderr).toContain(`scheduler: 1 source(s): ${raw.name}\n`);
    expect(stderr).toContain(`${raw.name}: `);
    expect(stderr).not.toContain('github-public-events');
    const counts = await outboxCounts(pool, String(raw.name));
    expect(counts.rows).toBe(counts.distinct);
  });

  it('refuses a PULL_SOURCES name that no definition has, naming it', async () => {
    const result = await runCli(['pull', '--all'], { PULL_SOURCES: 'github-public-events,nope' });
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('PULL_SOURCES: unknown source(s) nope; known: ');
  });
});
