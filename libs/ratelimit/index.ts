import { setTimeout as delay } from 'node:timers/promises';
import type { Queryable } from '../db/index.ts';
import { type Pacer, serverWaitMs } from '../http/index.ts';

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

const RESERVE_SQL = `
WITH now AS (SELECT clock_timestamp() AS t),
     b AS (SELECT *, greatest(now.t, coalesce(blocked_until, now.t)) AS start FROM rate_buckets, now WHERE name = $1 FOR UPDATE)
UPDATE rate_buckets r SET
  tokens = least(b.capacity, b.tokens + extract(epoch FROM b.start - b.updated_at) * b.rate_per_s) - 1,
  updated_at = b.start
FROM b, now
WHERE r.name = b.name
RETURNING r.tokens, r.rate_per_s, extract(epoch FROM b.start - now.t) * 1000 AS blocked_ms`;

export class PgTokenBucket implements Pacer {
  private ready?: Promise<void>;

  constructor(
    private readonly db: Queryable,
    readonly spec: BucketSpec,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => delay(ms),
  ) {
    if (!(spec.ratePerSecond > 0)) throw new RangeError(`rate limit of ${spec.name}: ratePerSecond must be > 0`);
    if (!(spec.burst >= 1)) throw new RangeError(`rate limit of ${spec.name}: burst must be >= 1`);
  }

  /** Creates the bucket, or applies a changed rate / burst to the existing one. */
  private ensure(): Promise<void> {
    this.ready ??= this.db
      .query(
        `INSERT INTO rate_buckets (name, tokens, capacity, rate_per_s, updated_at)
         VALUES ($1, $2, $2, $3, clock_timestamp())
         ON CONFLICT (name) DO UPDATE SET capacity = EXCLUDED.capacity, rate_per_s = EXCLUDED.rate_per_s`,
        [this.spec.name, this.spec.burst, this.spec.ratePerSecond],
      )
      .then(() => undefined);
    return this.ready;
  }

  /** Reserves one token; returns how long the caller must wait before using it. */
  async reserve(): Promise<number> {
    await this.ensure();
    const { rows } = await this.db.query<{ tokens: number; rate_per_s: number; blocked_ms: string }>(RESERVE_SQL, [
      this.spec.name,
    ]);
    const row = rows[0];
    if (!row) throw new Error(`rate bucket ${this.spec.name} vanished`);
    const deficit = row.tokens < 0 ? (-row.tokens / row.rate_per_s) * 1000 : 0;
    return Math.max(0, Number(row.blocked_ms)) + deficit;
  }

  async acquire(): Promise<number> {
    const wait = await this.reserve();
    if (wait > 0) await this.sleep(wait);
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
