import { spawn } from 'node:child_process';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import { changeFeedDefinition, definitionsDir } from './helpers.ts';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor.mjs');

let sim: Simulator;

beforeAll(async () => {
  sim = await startSimulator({ items: 200 });
});
afterAll(async () => {
  await sim.close();
});

/** The samples of one metric whose labels include `labels`, from Prometheus text format. */
function samples(text: string, name: string, labels: Record<string, string> = {}): number[] {
  const values: number[] = [];
  for (const line of text.split('\n')) {
    const match = /^([a-z_:]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match?.[1] !== name) continue;
    const found = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => found[k] === v)) values.push(Number(match[3]));
  }
  return values;
}
const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);

describe('conveyor pull --all: /metrics and /healthz', () => {
  it('serves on PULL_PORT=0 the port it prints, and its counters move', async () => {
    const feed = changeFeedDefinition(sim.url, {
      schedule: { every: '500ms', jitter: '100ms' },
      rate_limit: { per_second: 10, burst: 1 },
    });
    // Nothing listens on port 1: connection refused until the host's circuit opens and the run fails.
    const down = changeFeedDefinition('http://127.0.0.1:1', {
      retry: { max_attempts: 5, deadline: '60s' },
      schedule: { every: '1h' },
    });
    const dir = await definitionsDir(feed, down);
    sim.faults.storm = { requests: 2, retryAfterS: 1 };
    sim.faults.badRecords = true;
    const child = spawn(process.execPath, [BIN, 'pull', '--all', '--quiet'], {
      env: {
        ...process.env,
        CONVEYOR_SOURCES_DIR: dir,
        PULL_LEASE_SECONDS: '2',
        PULL_PORT: '0',
        GITHUB_API_URL: sim.url,
        GENERIC_API_URL: sim.url,
      },
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let stderr = '';
    const port = await new Promise<number>((resolve, reject) => {
      child.stderr.on('data', (d) => {
        stderr += d;
        const match = /\/metrics \/healthz \/readyz on http:\/\/127\.0\.0\.1:(\d+)/.exec(stderr);
        if (match) resolve(Number(match[1]));
      });
      child.on('exit', () => reject(new Error(`pull --all exited before printing its port:\n${stderr}`)));
    });
    try {
      expect(port).toBeGreaterThan(0);
      expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);

      const scrape = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      let text = '';
      const deadline = Date.now() + 45_000;
      while (Date.now() < deadline) {
        text = await scrape();
        const succeeded = sum(
          samples(text, 'conveyor_pull_runs_total', { source: String(feed.name), result: 'succeeded' }),
        );
        const failed = sum(samples(text, 'conveyor_pull_runs_total', { source: String(down.name), result: 'failed' }));
        if (succeeded >= 2 && failed >= 1) break;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
      const feedName = String(feed.name);
      expect(
        sum(samples(text, 'conveyor_pull_runs_total', { source: feedName, result: 'succeeded' })),
      ).toBeGreaterThanOrEqual(2);
      expect(sum(samples(text, 'conveyor_pull_runs_total', { source: String(down.name), result: 'failed' }))).toBe(1);
      expect(sum(samples(text, 'conveyor_pull_pages_total', { source: feedName }))).toBeGreaterThanOrEqual(5);
      expect(sum(samples(text, 'conveyor_pull_records_total', { source: feedName, outcome: 'accepted' }))).toBe(200);
      expect(samples(text, 'conveyor_pull_records_total', { source: feedName, outcome: 'duplicate' })).toHaveLength(1);
      expect(samples(text, 'conveyor_pull_records_total', { source: feedName, outcome: 'stale' })).toEqual([0]);
      // The bad-records fault hits whichever source reads /api/changes first.
      expect(sum(samples(text, 'conveyor_pull_records_total', { outcome: 'quarantined' }))).toBe(2);
      expect(
        sum(samples(text, 'conveyor_pull_waits_total', { source: feedName, reason: 'rate-limit' })),
      ).toBeGreaterThan(0);
      expect(sum(samples(text, 'conveyor_pull_waits_total', { reason: 'retry-after' }))).toBeGreaterThanOrEqual(2);
      expect(sum(samples(text, 'conveyor_pull_wait_seconds_total', { reason: 'retry-after' }))).toBeGreaterThanOrEqual(
        2,
      );
      const host = new URL(sim.url).host;
      expect(sum(samples(text, 'conveyor_http_requests_total', { host, status: '429' }))).toBe(2);
      expect(sum(samples(text, 'conveyor_http_requests_total', { host, status: '200' }))).toBeGreaterThan(5);
      expect(sum(samples(text, 'conveyor_http_retries_total', { host, reason: '429' }))).toBe(2);
      expect(sum(samples(text, 'conveyor_http_retries_total', { host: '127.0.0.1:1', reason: 'network' }))).toBe(4);
      expect(samples(text, 'conveyor_http_circuit_open', { host: '127.0.0.1:1' })).toEqual([1]);
      expect(samples(text, 'conveyor_http_circuit_opens_total', { host: '127.0.0.1:1' })).toEqual([1]);
      const [age] = samples(text, 'conveyor_pull_seconds_since_success', { source: feedName });
      expect(age).toBeGreaterThanOrEqual(0);
      expect(age).toBeLessThan(10);
      expect(samples(text, 'conveyor_pull_seconds_since_success', { source: String(down.name) })).toEqual([]);
    } finally {
      delete sim.faults.storm;
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
  });
});
