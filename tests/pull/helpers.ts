import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { changeFeedSource } from '../../infra/simulator/index.ts';
import type { Pool } from '../../libs/db/index.ts';
import { parseDefinition, type SourceDefinition } from '../../services/puller/definition.ts';
import { acquireLease } from '../../services/puller/lease.ts';
import { uniqueName } from '../helpers/real-stack.ts';

/** A change-feed source (cursor pagination, cursor checkpoint) against the simulator, with overrides. */
export function changeFeedDefinition(
  baseUrl: string,
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...changeFeedSource(baseUrl, uniqueName('feed').toLowerCase(), 50),
    retry: { max_attempts: 6, deadline: '60s' },
    ...overrides,
  };
}

export function definition(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = process.env): SourceDefinition {
  return parseDefinition(raw, `${String(raw.name)}.yaml`, env);
}

/** Writes definitions as YAML files into a fresh folder, for the CLI. */
export async function definitionsDir(...raws: Record<string, unknown>[]): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'conveyor-sources-'));
  for (const raw of raws) await writeFile(path.join(dir, `${String(raw.name)}.yaml`), stringify(raw));
  return dir;
}

/** In-process runs hold the lease like the CLI does. */
export async function takeLease(pool: Pool, source: string, owner = 'test-owner'): Promise<string> {
  if (!(await acquireLease(pool, source, owner, 600_000))) throw new Error(`lease on ${source} is busy`);
  return owner;
}

export async function eventIds(pool: Pool, source: string): Promise<string[]> {
  const { rows } = await pool.query<{ event_id: string }>(
    'SELECT event_id FROM raw_events WHERE source = $1 ORDER BY event_id',
    [source],
  );
  return rows.map((r) => r.event_id);
}

export async function outboxCounts(pool: Pool, source: string): Promise<{ rows: number; distinct: number }> {
  const { rows } = await pool.query<{ rows: string; distinct: string }>(
    'SELECT count(*) AS rows, count(DISTINCT event_id) AS distinct FROM outbox WHERE source = $1',
    [source],
  );
  return { rows: Number(rows[0]!.rows), distinct: Number(rows[0]!.distinct) };
}
