import type { Pool } from '../../libs/db/index.ts';

/**
 * Shard leases in Postgres. Each live relay heartbeats in relay_instances and holds at most its fair
 * share, ceil(shards / live relays), of relay_leases; a lease not renewed within its TTL can be taken.
 */
export class ShardLeases {
  constructor(
    private readonly pool: Pool,
    readonly owner: string,
    private readonly shards: number,
    private readonly ttlMs: number,
  ) {}

  /** Heartbeats, renews what this relay holds and returns it with the fair share. */
  async renew(): Promise<{ held: number[]; fairShare: number }> {
    const { rows } = await this.pool.query<{ held: number[] | null; live: number }>(
      `WITH beat AS (
         INSERT INTO relay_instances (owner, heartbeat_at) VALUES ($1, clock_timestamp())
         ON CONFLICT (owner) DO UPDATE SET heartbeat_at = EXCLUDED.heartbeat_at
       ),
       pruned AS (
         DELETE FROM relay_instances WHERE heartbeat_at < clock_timestamp() - $2 * interval '1 millisecond'
       ),
       renewed AS (
         UPDATE relay_leases SET expires_at = clock_timestamp() + $2 * interval '1 millisecond'
         WHERE owner = $1 AND expires_at > clock_timestamp()
         RETURNING shard
       )
       SELECT (SELECT array_agg(shard ORDER BY shard) FROM renewed) AS held,
              (SELECT count(*)::int FROM relay_instances
                WHERE owner <> $1 AND heartbeat_at >= clock_timestamp() - $2 * interval '1 millisecond') + 1 AS live`,
      [this.owner, this.ttlMs],
    );
    const row = rows[0]!;
    return { held: row.held ?? [], fairShare: Math.ceil(this.shards / row.live) };
  }

  /** Takes up to `count` shards that nobody holds or whose lease expired. */
  async claim(count: number): Promise<number[]> {
    if (count <= 0) return [];
    const { rows } = await this.pool.query<{ shard: number }>(
      `WITH candidates AS (
         SELECT s AS shard FROM generate_series(0, $3 - 1) AS s
         LEFT JOIN relay_leases l ON l.shard = s
         WHERE l.shard IS NULL OR l.expires_at < clock_timestamp()
         ORDER BY random()
         LIMIT $4
       )
       INSERT INTO relay_leases (shard, owner, expires_at)
       SELECT shard, $1, clock_timestamp() + $2 * interval '1 millisecond' FROM candidates
       ON CONFLICT (shard) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at
         WHERE relay_leases.expires_at < clock_timestamp()
       RETURNING shard`,
      [this.owner, this.ttlMs, this.shards, count],
    );
    return rows.map((r) => r.shard);
  }

  async release(shards: number[]): Promise<void> {
    if (shards.length === 0) return;
    await this.pool.query('DELETE FROM relay_leases WHERE owner = $1 AND shard = ANY($2::smallint[])', [
      this.owner,
      shards,
    ]);
  }

  async leave(): Promise<void> {
    await this.pool.query('DELETE FROM relay_leases WHERE owner = $1', [this.owner]);
    await this.pool.query('DELETE FROM relay_instances WHERE owner = $1', [this.owner]);
  }
}
