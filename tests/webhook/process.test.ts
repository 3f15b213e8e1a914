import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { testPool } from '../helpers/real-stack.ts';
import { githubSignature } from './signing.ts';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor.mjs');
const pool = testPool(2);
afterAll(() => pool.end());

interface Service {
  child: ChildProcess;
  port: number;
  output: () => string;
  exited: Promise<number | null>;
}

/** `conveyor webhook` in its own process, as a user runs it; resolves once it listens. */
function startService(env: NodeJS.ProcessEnv = {}): Promise<Service> {
  const child = spawn(process.execPath, [BIN, 'webhook'], {
    env: { ...process.env, WEBHOOK_PORT: '0', LOG_LEVEL: 'info', ...env },
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`webhook service did not start:\n${output}`)), 30_000);
    const onData = (data: Buffer) => {
      output += data;
      const match = /"port":(\d+).*"msg":"webhook service listening"/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), output: () => output, exited });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (data: Buffer) => {
      output += data;
    });
    child.on('exit', (code) => reject(new Error(`webhook service exited (${code}):\n${output}`)));
  });
}

function ingestBody(source: string, entity: string) {
  return JSON.stringify({
    source,
    event_type: 'load',
    entity_id: entity,
    event_time: new Date().toISOString(),
    payload: { entity, filler: 'x'.repeat(200) },
  });
}

async function post(port: number, url: string, body: string, headers: Record<string, string> = {}) {
  const res = await request(`http://127.0.0.1:${port}${url}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body,
  });
  return { code: res.statusCode, json: (await res.body.json()) as { event_id: string; status: string } };
}

/** Workers that post distinct events until the service stops answering; returns the acknowledged bodies. */
async function load(port: number, source: string, workers: number, until: Promise<unknown>) {
  const acked = new Map<string, string>();
  let stopped = false;
  void until.then(() => {
    stopped = true;
  });
  await Promise.all(
    Array.from({ length: workers }, async (_, w) => {
      for (let i = 0; !stopped; i++) {
        const body = ingestBody(source, `k-${w}-${i}`);
        try {
          const answer = await post(port, '/ingest', body);
          if (answer.code === 200) acked.set(answer.json.event_id, body);
        } catch {
          return; // connection refused or reset: the service is gone
        }
      }
    }),
  );
  return acked;
}

describe('the webhook service as a process', () => {
  it('kill -9 under load: every event answered 2xx is stored exactly once, with its outbox row', async () => {
    const source = `crash-${randomUUID().slice(0, 8)}`;
    const first = await startService();
    const killed = new Promise((resolve) =>
      setTimeout(() => {
        first.child.kill('SIGKILL');
        resolve(undefined);
      }, 2500),
    );
    const acked = await load(first.port, source, 16, killed);
    await first.exited;
    expect(acked.size).toBeGreaterThan(20);

    const second = await startService();
    try {
      const { rows } = await pool.query<{ event_id: string; copies: number; outbox: number }>(
        `SELECT r.event_id, count(*)::int AS copies,
                (SELECT count(*)::int FROM outbox o WHERE o.source = r.source AND o.event_id = r.event_id) AS outbox
         FROM raw_events r WHERE r.source = $1 GROUP BY r.source, r.event_id`,
        [source],
      );
      const stored = new Map(rows.map((r) => [r.event_id, r]));
      for (const id of acked.keys()) {
        expect(stored.get(id), id).toMatchObject({ copies: 1, outbox: 1 });
      }
      // Every acknowledged event resent to the restarted service is recognised, not stored again.
      for (const body of [...acked.values()].slice(0, 50)) {
        expect((await post(second.port, '/ingest', body)).json.status).toBe('DUPLICATE');
      }
    } finally {
      second.child.kill('SIGTERM');
      expect(await second.exited).toBe(0);
    }
  });

  it('SIGTERM finishes in-flight requests, then exits 0; logs carry no secret', async () => {
    const secret = `gh-secret-${randomUUID()}`;
    const source = `drain-${randomUUID().slice(0, 8)}`;
    const service = await startService({ GITHUB_WEBHOOK_SECRET: secret });
    const body = JSON.stringify({ zen: 'hi', repository: { full_name: 'o/r' } });
    const delivery = { 'x-github-delivery': randomUUID(), 'x-github-event': 'ping' };
    const good = await post(service.port, '/webhooks/github', body, {
      ...delivery,
      'x-hub-signature-256': githubSignature(secret, body),
    });
    expect(good.json.status).toBe('ACCEPTED');
    const bad = await post(service.port, '/webhooks/github', body, {
      ...delivery,
      'x-hub-signature-256': githubSignature('wrong', body),
    });
    expect(bad.code).toBe(401);

    const inFlight = Array.from({ length: 40 }, (_, i) =>
      post(service.port, '/ingest', ingestBody(source, `d-${i}`)).catch((error: Error) => error),
    );
    setTimeout(() => service.child.kill('SIGTERM'), 30);
    const answers = await Promise.all(inFlight);
    expect(await service.exited).toBe(0);
    const ok = answers.filter((a) => !(a instanceof Error) && a.code === 200) as Array<{ json: { event_id: string } }>;
    expect(ok.length).toBeGreaterThan(0);
    const { rows } = await pool.query<{ event_id: string }>('SELECT event_id FROM raw_events WHERE source = $1', [
      source,
    ]);
    const stored = new Set(rows.map((r) => r.event_id));
    for (const answer of ok) expect(stored.has(answer.json.event_id)).toBe(true);
    expect(service.output()).toContain('webhook service stopped');
    expect(service.output()).toContain('GITHUB_WEBHOOK_SECRET');
    expect(service.output()).not.toContain(secret);
  });

  it('refuses to start with a clear error when a configured secret variable is missing', async () => {
    const file = path.resolve(import.meta.dirname, 'fixtures/sources.yaml');
    await expect(startService({ WEBHOOK_SOURCES_FILE: file, ACME_WEBHOOK_SECRET: '' })).rejects.toThrow(
      /source "acme": none of its secret variables is set \(ACME_WEBHOOK_SECRET\)/,
    );
    const service = await startService({ WEBHOOK_SOURCES_FILE: file, ACME_WEBHOOK_SECRET: 'acme-secret-value' });
    service.child.kill('SIGTERM');
    expect(await service.exited).toBe(0);
    expect(service.output()).toContain('"name":"acme","scheme":"hmac"');
    expect(service.output()).not.toContain('acme-secret-value');
  });
});
