import { setTimeout as delay } from 'node:timers/promises';
import type { Queryable } from '../db/index.ts';
import { type AcquireOptions, type Pacer, PacerWaitError, serverWaitMs } from '../http/index.ts';

/**
 * A token bucket shared by every process that pulls one source, kept in one Postgres row. Each
 * request reserves a token in a single UPDATE; the bucket may go negative, and a negative balance is
 * the caller's place in the queue (wait = deficit / rate). The database clock is the only clock, so
 * machines with skewed clocks still share one rate. Postgres rather than Redis: it is already a
 * dependency, and one round trip per request is small next to the request itself.
 */

export interface BucketSpec {
  /** Usually the source name; sources sharing one API quota can share one bucket. */
  name: string;
  ratePerSecond: number;
  /** Tokens that may be spent at once after an idle period. */
  burst: number;
}

// Takes a token unless the wait for it would be longer than $2 ms (NULL: any wait); the wait is
// returned either way, and reserved says whether the token was taken.
const RESERVE_SQL = `
WITH now AS (SELECT clock_timestamp() AS t),
     b AS (SELECT *, greatest(now.t, coalesce(blocked_until, now.t)) AS start FROM rate_buckets, now WHERE name = $1 FOR UPDATE),
     n AS (SELECT b.name, b.start, b.rate_per_s,
                  least(b.capacity, b.tokens + extract(epoch FROM b.start - b.updated_at) * b.rate_per_s) - 1 AS tokens,
                  extract(epoch FROM b.start - b.t) * 1000 AS blocked_ms
           FROM b),
     w AS (SELECT n.*, greatest(0, n.blocked_ms) + greatest(0, -n.tokens) / n.rate_per_s * 1000 AS wait_ms FROM n),
     u AS (UPDATE rate_buckets r SET tokens = w.tokens, updated_at = w.start
           FROM w
           WHERE r.name = w.name AND ($2::float8 IS NULL OR w.wait_ms <= $2::float8)
           RETURNING r.name)
SELECT w.wait_ms, EXISTS (SELECT 1 FROM u) AS reserved FROM w`;

/** A bucket is shared by sources whose rate limits differ. */
export class RateBucketConflictError extends Error {
  constructor(name: string, rate: number, burst: number, wantedRate: number, wantedBurst: number) {
    super(
      `rate bucket ${name} is ${rate}/s with burst ${burst}, but this source asks for ${wantedRate}/s with burst ` +
        `${wantedBurst}: sources sharing a bucket must have the same rate_limit. Make their definitions agree; ` +
        `to change the rate on purpose: UPDATE rate_buckets SET rate_per_s = ${wantedRate}, capacity = ${wantedBurst} ` +
        `WHERE name = '${name}'`,
    );
    this.name = 'RateBucketConflictError';
  }
}

export class PgTokenBucket implements Pacer {
  private ready?: Promise<void>;

  constructor(
    private readonly db: Queryable,
    readonly spec: BucketSpec,
    private readonly sleep: (ms: number, signal?: AbortSignal) => Promise<void> = (ms, signal) =>
      delay(ms, undefined, { signal }),
  ) {
    if (!(spec.ratePerSecond > 0)) throw new RangeError(`rate limit of ${spec.name}: ratePerSecond must be > 0`);
    if (!(spec.burst >= 1)) throw new RangeError(`rate limit of ${spec.name}: burst must be >= 1`);
  }

  /**
   * Creates the bucket, or checks that the existing one has this rate and burst. Sources sharing a
   * bucket with different rates used to overwrite each other's rate on every run; now the second one
   * fails, naming both, until the definitions agree (or the row is changed on purpose).
   */
  private ensure(): Promise<void> {
    this.ready ??= this.createOrCheck().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  private async createOrCheck(): Promise<void> {
    const { name, ratePerSecond, burst } = this.spec;
    for (let tries = 0; tries < 3; tries++) {
      const created = await this.db.query(
        `INSERT INTO rate_buckets (name, tokens, capacity, rate_per_s, updated_at)
         VALUES ($1, $2, $2, $3, clock_timestamp())
         ON CONFLICT (name) DO NOTHING`,
        [name, burst, ratePerSecond],
      );
      if (created.rowCount === 1) return;
      const { rows } = await this.db.query<{ capacity: number; rate_per_s: number }>(
        'SELECT capacity, rate_per_s FROM rate_buckets WHERE name = $1',
        [name],
      );
      const existing = rows[0];
      if (!existing) continue; // deleted in between: create it
      if (existing.rate_per_s === ratePerSecond && existing.capacity === burst) return;
      throw new RateBucketConflictError(name, existing.rate_per_s, existing.capacity, ratePerSecond, burst);
    }
    throw new Error(`rate bucket ${name} could not be created`);
  }

  /**
   * Reserves one token; returns how long the caller must wait before using it. A wait longer than
   * maxWaitMs takes no token and rejects with PacerWaitError (naming the wait).
   */
  async reserve(maxWaitMs?: number): Promise<number> {
    await this.ensure();
    const { rows } = await this.db.query<{ wait_ms: number | string; reserved: boolean }>(RESERVE_SQL, [
      this.spec.name,
      maxWaitMs ?? null,
    ]);
    const row = rows[0];
    if (!row) throw new Error(`rate bucket ${this.spec.name} vanished`);
    const wait = Math.max(0, Number(row.wait_ms));
    if (!row.reserved) throw new PacerWaitError(wait, maxWaitMs ?? 0, `rate bucket ${this.spec.name}`);
    return wait;
  }

  async acquire(options: AcquireOptions = {}): Promise<number> {
    options.signal?.throwIfAborted();
    const wait = await this.reserve(options.maxWaitMs);
    if (wait > 0) await this.sleep(wait, options.signal);
    return wait;
  }

  /**
   * Learns from the server: a 429 or an exhausted quota (remaining 0) pauses every process until the
   * server's reset time; a low remaining count caps the tokens we believe we have.
   */
  async observe(status: number, headers: Record<string, string>): Promise<void> {
    await this.ensure();
    const remainingRaw = headers['x-ratelimit-remaining'] ?? headers['ratelimit-remaining'];
    const remaining = remainingRaw === undefined ? undefined : Number(remainingRaw);
    const exhausted = status === 429 || remaining === 0;
    if (exhausted) {
      const waitMs = serverWaitMs(headers);
      if (waitMs === undefined) return;
      await this.block(waitMs);
    } else if (remaining !== undefined && Number.isFinite(remaining)) {
      await this.db.query('UPDATE rate_buckets SET tokens = least(tokens, $2) WHERE name = $1', [
        this.spec.name,
        remaining,
      ]);
    }
  }

  /** Nobody sends before now + ms; refill restarts from then, so waiters do not stampede at once. */
  async block(ms: number): Promise<void> {
    await this.ensure();
    await this.db.query(
      `WITH until AS (SELECT clock_timestamp() + $2 * interval '1 millisecond' AS t)
       UPDATE rate_buckets SET
         blocked_until = greatest(coalesce(blocked_until, '-infinity'), until.t),
         updated_at = greatest(updated_at, until.t),
         tokens = least(tokens, 0)
       FROM until WHERE name = $1`,
      [this.spec.name, ms],
    );
  }
}
