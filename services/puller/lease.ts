import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Pool } from '../../libs/db/index.ts';

/** Who holds a lease: readable in pull_leases when someone asks "who is running this?". */
export function newOwner(): string {
  return `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
}

/** Takes the lease on a source when free, expired, or already ours. */
export async function acquireLease(pool: Pool, source: string, owner: string, ttlMs: number): Promise<boolean> {
  const { rowCount } = await pool.query(
    `INSERT INTO pull_leases (source, owner, expires_at) VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond')
     ON CONFLICT (source) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
     WHERE pull_leases.expires_at < clock_timestamp() OR pull_leases.owner = EXCLUDED.owner`,
    [source, owner, ttlMs],
  );
  return rowCount === 1;
}

export async function leaseHolder(
  pool: Pool,
  source: string,
): Promise<{ owner: string; expires_at: Date } | undefined> {
  const { rows } = await pool.query<{ owner: string; expires_at: Date }>(
    'SELECT owner, expires_at FROM pull_leases WHERE source = $1 AND expires_at > clock_timestamp()',
    [source],
  );
  return rows[0];
}

export async function releaseLease(pool: Pool, source: string, owner: string): Promise<void> {
  await pool.query('DELETE FROM pull_leases WHERE source = $1 AND owner = $2', [source, owner]);
}

/**
 * Holds the lease while `work` runs, renewing it at a third of its lifetime. A failed renewal does
 * not stop the work here: every page transaction checks the lease itself and refuses to commit.
 */
export async function withLease<T>(
  pool: Pool,
  source: string,
  owner: string,
  ttlMs: number,
  work: () => Promise<T>,
): Promise<T> {
  const timer = setInterval(
    () => {
      acquireLease(pool, source, owner, ttlMs).catch(() => undefined);
    },
    Math.max(100, ttlMs / 3),
  );
  try {
    return await work();
  } finally {
    clearInterval(timer);
    await releaseLease(pool, source, owner).catch(() => undefined);
  }
}
