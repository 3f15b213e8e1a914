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

/**
 * Extends a lease this owner still holds and that has not expired. False when it was lost: expired
 * (and maybe taken over and released since) or held by another owner. Never takes a lease back, as
 * acquireLease would: a stalled holder must not silently overlap with the run that replaced it.
 */
export async function renewLease(pool: Pool, source: string, owner: string, ttlMs: number): Promise<boolean> {
  const { rowCount } = await pool.query(
    `UPDATE pull_leases SET expires_at = clock_timestamp() + $3 * interval '1 millisecond'
     WHERE source = $1 AND owner = $2 AND expires_at > clock_timestamp()`,
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
 * Holds the lease while `work` runs, renewing it at a third of its lifetime. When a renewal finds the
 * lease lost, the signal given to `work` aborts (the engine stops before its next request); a renewal
 * that fails for another reason (the database briefly unreachable) is tried again at the next tick.
 * Every page transaction checks the lease itself as well and refuses to commit without it.
 */
export async function withLease<T>(
  pool: Pool,
  source: string,
  owner: string,
  ttlMs: number,
  work: (lost: AbortSignal) => Promise<T>,
): Promise<T> {
  const lost = new AbortController();
  const timer = setInterval(
    () => {
      renewLease(pool, source, owner, ttlMs).then(
        (held) => {
          if (!held) {
            lost.abort(new Error(`lease on source ${source} was lost (expired or taken over)`));
            clearInterval(timer);
          }
        },
        () => undefined,
      );
    },
    Math.max(100, ttlMs / 3),
  );
  try {
    return await work(lost.signal);
  } finally {
    clearInterval(timer);
    await releaseLease(pool, source, owner).catch(() => undefined);
  }
}
