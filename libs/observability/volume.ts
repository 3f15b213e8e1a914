import type { Queryable } from '../db/index.ts';

/**
 * Volume anomalies: per source, the events accepted in the last complete hour against the hours
 * before it, as a Z-score. A source that falls silent (0 in the last hour) or floods shows up here
 * before any consumer notices. Hours with no events count as 0, so silence is measured, not skipped.
 */

export interface VolumeOptions {
  /** The hour checked is the last complete one before this time (default: now). */
  at?: Date;
  /** Hours before it that make the baseline. */
  baselineHours?: number;
  /** |z| at or above this is an anomaly. */
  threshold?: number;
  /** A source with fewer baseline hours (since its first event) is reported but never flagged (default 24, or all). */
  minBaselineHours?: number;
  sources?: string[];
}

export interface SourceVolume {
  source: string;
  /** Start of the hour checked (UTC). */
  hour: Date;
  events: number;
  baselineMean: number;
  baselineStddev: number;
  baselineHours: number;
  /** null: too little history to judge. ±Infinity: the baseline never varied and this hour differs. */
  z: number | null;
  anomaly: boolean;
}

export class VolumeOptionError extends Error {}

const SQL = `
WITH bounds AS (
  SELECT date_trunc('hour', $1::timestamptz, 'UTC') AS checked_end
), counts AS (
  SELECT source, date_trunc('hour', ingested_at, 'UTC') AS hour, count(*)::float8 AS n
  FROM raw_events, bounds
  WHERE ingested_at >= checked_end - ($2::int + 1) * interval '1 hour' AND ingested_at < checked_end
    AND (cardinality($3::text[]) = 0 OR source = ANY($3::text[]))
  GROUP BY 1, 2
), grid AS (
  SELECT s.source, h.hour, coalesce(c.n, 0) AS n, h.hour = b.checked_end - interval '1 hour' AS checked
  FROM (SELECT source, min(hour) AS first_hour FROM counts GROUP BY source) s
  CROSS JOIN bounds b
  CROSS JOIN LATERAL generate_series(s.first_hour, b.checked_end - interval '1 hour', interval '1 hour') AS h(hour)
  LEFT JOIN counts c ON c.source = s.source AND c.hour = h.hour
)
SELECT source,
  (SELECT checked_end - interval '1 hour' FROM bounds) AS hour,
  coalesce(max(n) FILTER (WHERE checked), 0) AS events,
  coalesce(avg(n) FILTER (WHERE NOT checked), 0) AS mean,
  coalesce(stddev_samp(n) FILTER (WHERE NOT checked), 0) AS stddev,
  count(*) FILTER (WHERE NOT checked)::int AS baseline_hours
FROM grid GROUP BY source ORDER BY source`;

function zScore(events: number, mean: number, stddev: number): number {
  if (stddev > 0) return (events - mean) / stddev;
  if (events === mean) return 0;
  return events > mean ? Number.POSITIVE_INFINITY : Number.NEGATIVE_INFINITY;
}

/** One row per source with events in the window, sorted by source. */
export async function volumeAnomalies(db: Queryable, options: VolumeOptions = {}): Promise<SourceVolume[]> {
  const { at = new Date(), baselineHours = 168, threshold = 3, sources = [] } = options;
  const minBaselineHours = options.minBaselineHours ?? Math.min(24, baselineHours);
  if (!Number.isInteger(baselineHours) || baselineHours < 2) {
    throw new VolumeOptionError(`baseline hours: expected a whole number of at least 2, got ${baselineHours}`);
  }
  if (!(threshold > 0)) throw new VolumeOptionError(`threshold: expected a number above 0, got ${threshold}`);
  if (!Number.isInteger(minBaselineHours) || minBaselineHours < 2 || minBaselineHours > baselineHours) {
    throw new VolumeOptionError(
      `minimum baseline hours: expected a whole number from 2 to ${baselineHours}, got ${minBaselineHours}`,
    );
  }
  if (Number.isNaN(at.getTime())) throw new VolumeOptionError('at: not a valid time');
  const { rows } = await db.query<{
    source: string;
    hour: Date;
    events: number;
    mean: number;
    stddev: number;
    baseline_hours: number;
  }>(SQL, [at.toISOString(), baselineHours, sources]);
  return rows.map((r) => {
    const z = r.baseline_hours < minBaselineHours ? null : zScore(r.events, r.mean, r.stddev);
    return {
      source: r.source,
      hour: r.hour,
      events: r.events,
      baselineMean: r.mean,
      baselineStddev: r.stddev,
      baselineHours: r.baseline_hours,
      z,
      anomaly: z !== null && Math.abs(z) >= threshold,
    };
  });
}
