import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Simulator, startSimulator } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { runSource } from '../../services/puller/engine.ts';
import { runCli } from '../cli/run-cli.ts';
import { testPool } from '../helpers/real-stack.ts';
import { changeFeedDefinition, definition, definitionsDir, outboxCounts, takeLease } from './helpers.ts';

const SECRET = 'sim-secret-7f3a9c';
const env = { OAUTH_CLIENT_ID: 'conveyor', OAUTH_CLIENT_SECRET: SECRET };

let pool: Pool;
let sim: Simulator;

beforeAll(async () => {
  pool = testPool();
  sim = await startSimulator({
    items: 120,
    faults: { oauth: { clientId: 'conveyor', clientSecret: SECRET, expiresInS: 2 } },
  });
});
afterAll(async () => {
  await sim.close();
  await pool.end();
});

const oauthDefinition = () =>
  changeFeedDefinition(sim.url, {
    request: { base_url: sim.url, path: '/api/changes', params: { limit: 20 } },
    auth: {
      type: 'oauth2_client_credentials',
      token_url: `${sim.url}/oauth/token`,
      client_id_env: 'OAUTH_CLIENT_ID',
      client_secret_env: 'OAUTH_CLIENT_SECRET',
    },
  });

async function run(raw: Record<string, unknown>) {
  const def = definition(raw);
  return runSource(def, { pool, owner: await takeLease(pool, def.name), env });
}

describe('OAuth2 client credentials', () => {
  it('fetches a token, reuses it while valid and fetches a new one after it expired', async () => {
    const raw = oauthDefinition();
    sim.resetStats();
    const first = await run(raw);
    expect(first.accepted).toBe(120);
    expect(sim.stats.tokensIssued).toBe(1);
    const second = await run(raw);
    expect(second.pages).toBe(1);
    expect(sim.stats.tokensIssued).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await run(raw);
    expect(sim.stats.tokensIssued).toBe(2);
    expect(sim.stats.byStatus[401]).toBeUndefined();
    expect(await outboxCounts(pool, String(raw.name))).toEqual({ rows: 120, distinct: 120 });
  });

  it('renews a token the server revoked before it expired, once, and the run goes on', async () => {
    const raw = oauthDefinition();
    sim.resetStats();
    const first = await run(raw);
    const issued = sim.stats.tokensIssued;
    sim.revokeTokens();
    const second = await run(raw);
    expect(second.pages).toBe(1);
    expect(sim.stats.tokensIssued).toBe(issued + 1);
    expect(sim.stats.byStatus[401]).toBe(1);
    expect(first.accepted).toBe(sim.items.size);
  });

  it('renews the token in the middle of a run that outlives it', async () => {
    const raw = oauthDefinition();
    sim.resetStats();
    sim.faults.slowMs = 400;
    const started = Date.now();
    try {
      const stats = await run(raw);
      expect(stats.accepted).toBe(120);
    } finally {
      delete sim.faults.slowMs;
    }
    // 7 pages at 400 ms outlive a 2 s token: without renewal the API would have answered 401.
    expect(Date.now() - started).toBeGreaterThan(2500);
    expect(sim.stats.tokensIssued).toBeGreaterThanOrEqual(1);
    expect(sim.stats.tokensIssued).toBeLessThan(7);
    expect(sim.stats.byStatus[401]).toBeUndefined();
  });

  it('fails the run with a clear error and no secret in the output when the secret is wrong', async () => {
    const raw = oauthDefinition();
    const dir = await definitionsDir(raw);
    const wrong = 'wrong-secret-b81d2e';
    const result = await runCli(['pull', '--source', String(raw.name), '--once'], {
      CONVEYOR_SOURCES_DIR: dir,
      GITHUB_API_URL: sim.url,
      GENERIC_API_URL: sim.url,
      OAUTH_CLIENT_ID: 'conveyor',
      OAUTH_CLIENT_SECRET: wrong,
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(
      `source ${raw.name}: OAuth2 token request to ${sim.url}/oauth/token failed: POST ${sim.url}/oauth/token answered 401: {"error":"invalid_client"`,
    );
    expect(result.stdout + result.stderr).not.toContain(wrong);
    expect(result.stdout + result.stderr).not.toContain(SECRET);
    const { rows } = await pool.query<{ status: string; error: string }>(
      'SELECT status, error FROM pull_runs WHERE source = $1',
      [raw.name],
    );
    expect(rows.map((r) => r.status)).toEqual(['failed']);
    expect(rows[0]!.error).not.toContain(wrong);
    const { rowCount } = await pool.query('SELECT 1 FROM pull_checkpoints WHERE source = $1', [raw.name]);
    expect(rowCount).toBe(0);
  });
});
