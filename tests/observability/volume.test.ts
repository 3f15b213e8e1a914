import { afterAll, describe, expect, it } from 'vitest';
import { VolumeOptionError, volumeAnomalies } from '../../libs/observability/volume.ts';
import { runCli } from '../cli/run-cli.ts';
import { testPool, uniqueName } from '../helpers/real-stack.ts';

const pool = testPool(2);
afterAll(() => pool.end());

// The hour checked is 2026-03-10T12:00Z (the last complete one before `at`).
const at = new Date('2026-03-10T13:20:00Z');
const hourStart = (hoursBefore: number) => new Date(Date.UTC(2026, 2, 10, 12) - hoursBefore * 3600_000);

/** `counts[i]` events arriving during the hour `i` hours before the checked one (index 0: the checked hour). */
async function arrive(source: string, counts: number[]): Promise<void> {
  const hours = counts.flatMap((n, i) => Array.from({ length: n }, (_, k) => [i, k]));
  await pool.query(
    `INSERT INTO raw_events (source, event_id, event_type, entity_key, event_time, ingested_at, payload)
     SELECT $1, $1 || '-' || h || '-' || k, 'tick', 'k', t, t, '{}'
     FROM unnest($2::int[], $3::int[]) AS x(h, k),
          LATERAL (SELECT $4::timestamptz - h * interval '1 hour' + k * interval '1 second') AS y(t)`,
    [source, hours.map(([h]) => h), hours.map(([, k]) => k), hourStart(0).toISOString()],
  );
}

/** 30 baseline hours alternating 95 and 105 events (mean 100, stddev about 5.1). */
const steady = (checked: number) => [checked, ...Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 95 : 105))];

describe('volume anomalies', () => {
  const silent = uniqueName('vol-silent');
  const flood = uniqueName('vol-flood');
  const normal = uniqueName('vol-normal');
  const young = uniqueName('vol-young');
  const gappy = uniqueName('vol-gappy');
  const sources = [silent, flood, normal, young, gappy];

  it('flags a source that fell silent or flooded, not one within its usual range; hours with none count as 0', async () => {
    await arrive(silent, steady(0));
    await arrive(flood, steady(400));
    await arrive(normal, steady(104));
    await arrive(young, [500, 10, 10, 10]);
    // Events every other hour: the empty hours are part of the baseline (mean 50, not 100).
    await arrive(gappy, [100, ...Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? 0 : 100))]);

    const rows = await volumeAnomalies(pool, { at, sources, baselineHours: 48 });
    const by = new Map(rows.map((r) => [r.source, r]));
    expect(rows.map((r) => r.source).sort()).toEqual([...sources].sort());
    expect(by.get(silent)).toMatchObject({ events: 0, baselineHours: 30, anomaly: true });
    expect(by.get(silent)!.z!).toBeLessThan(-3);
    expect(by.get(silent)!.hour.toISOString()).toBe('2026-03-10T12:00:00.000Z');
    expect(by.get(flood)).toMatchObject({ events: 400, anomaly: true });
    expect(by.get(normal)).toMatchObject({ events: 104, anomaly: false });
    expect(by.get(normal)!.baselineMean).toBeCloseTo(100, 6);
    expect(by.get(young)).toMatchObject({ events: 500, baselineHours: 3, z: null, anomaly: false });
    expect(by.get(gappy)).toMatchObject({ events: 100, baselineHours: 30, anomaly: false });
    expect(by.get(gappy)!.baselineMean).toBeCloseTo(50, 6);
  });

  it('the CLI prints the table, exits 1 on an anomaly and 0 without one', async () => {
    const env = { DATABASE_URL: process.env.DATABASE_URL };
    const args = ['volume', '--at', at.toISOString(), '--baseline-hours', '48'];
    const flagged = await runCli([...args, '--source', silent, normal], env);
    expect(flagged.code, flagged.stderr).toBe(1);
    expect(flagged.stdout).toContain('hour checked: 2026-03-10T12:00:00.000Z');
    expect(flagged.stdout).toMatch(new RegExp(`${silent} +0 +100\\.0 .* ANOMALY`));
    expect(flagged.stderr).toContain('1 source(s) with anomalous volume');

    const calm = await runCli([...args, '--source', normal, '--json'], env);
    expect(calm.code, calm.stderr).toBe(0);
    expect(JSON.parse(calm.stdout)).toMatchObject({ source: normal, events: 104, anomaly: false });

    const bad = await runCli(['volume', '--threshold', 'high'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('--threshold: not a number: "high"');
  });

  it('refuses options that cannot make a baseline', async () => {
    await expect(volumeAnomalies(pool, { baselineHours: 1 })).rejects.toThrow(VolumeOptionError);
    await expect(volumeAnomalies(pool, { minBaselineHours: 500 })).rejects.toThrow(
      'minimum baseline hours: expected a whole number from 2 to 168, got 500',
    );
  });
});
