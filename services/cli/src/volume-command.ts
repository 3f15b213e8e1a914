import { type Command, InvalidArgumentError } from 'commander';
import { createPool } from '../../../libs/db/index.ts';
import { type SourceVolume, volumeAnomalies } from '../../../libs/observability/volume.ts';

interface VolumeFlags {
  source?: string[];
  at?: Date;
  baselineHours: number;
  minBaselineHours?: number;
  threshold: number;
  json?: boolean;
}

function number(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${flag}: not a number: "${value}"`);
    return n;
  };
}

function time(value: string): Date {
  const at = new Date(value);
  if (Number.isNaN(at.getTime())) throw new InvalidArgumentError(`not a time: "${value}" (use ISO 8601)`);
  return at;
}

function z(row: SourceVolume): string {
  if (row.z === null) return 'n/a';
  if (!Number.isFinite(row.z)) return row.z > 0 ? '+inf' : '-inf';
  return row.z.toFixed(2);
}

export function registerVolumeCommand(program: Command): void {
  program
    .command('volume')
    .description(
      'Volume anomalies: per source, the events accepted in the last complete hour against the hours before it, as a Z-score (hours with none count as 0). Exits 1 when any source is an anomaly (or on an error, a bad option included): run it from cron or Airflow.',
    )
    .option('-s, --source <name...>', 'only these sources')
    .option('--at <time>', 'check the last complete hour before this time (ISO 8601; default now)', time)
    .option(
      '--baseline-hours <n>',
      'hours before the checked one that make the baseline (a whole number, 2 or more)',
      number('--baseline-hours'),
      168,
    )
    .option(
      '--min-baseline-hours <n>',
      'a source with fewer hours of history is listed but not judged (2 up to the baseline; default 24, or the baseline if shorter)',
      number('--min-baseline-hours'),
    )
    .option('--threshold <z>', '|z| at or above this is an anomaly (above 0)', number('--threshold'), 3)
    .option('--json', 'print one JSON line per source')
    .action(async (options: VolumeFlags) => {
      const pool = createPool({ max: 1, applicationName: 'conveyor-volume' });
      let rows: SourceVolume[];
      try {
        rows = await volumeAnomalies(pool, {
          at: options.at,
          baselineHours: options.baselineHours,
          minBaselineHours: options.minBaselineHours,
          threshold: options.threshold,
          sources: options.source,
        });
      } finally {
        await pool.end();
      }
      if (options.json) {
        for (const row of rows) {
          const zText = row.z === null || Number.isFinite(row.z) ? row.z : String(row.z);
          process.stdout.write(`${JSON.stringify({ ...row, hour: row.hour.toISOString(), z: zText })}\n`);
        }
      } else if (rows.length === 0) {
        process.stdout.write('no events in the window\n');
      } else {
        process.stdout.write(`hour checked: ${rows[0]!.hour.toISOString()} (UTC)\n`);
        process.stdout.write(
          `${'source'.padEnd(32)} ${'events'.padStart(9)} ${'mean'.padStart(10)} ${'stddev'.padStart(9)} ${'hours'.padStart(5)} ${'z'.padStart(7)}\n`,
        );
        for (const r of rows) {
          process.stdout.write(
            `${r.source.padEnd(32)} ${String(r.events).padStart(9)} ${r.baselineMean.toFixed(1).padStart(10)} ${r.baselineStddev.toFixed(1).padStart(9)} ${String(r.baselineHours).padStart(5)} ${z(r).padStart(7)}${r.anomaly ? '  ANOMALY' : ''}\n`,
          );
        }
      }
      const anomalies = rows.filter((r) => r.anomaly).length;
      if (anomalies > 0) {
        process.stderr.write(`${anomalies} source(s) with anomalous volume (|z| >= ${options.threshold})\n`);
        process.exitCode = 1;
      }
    });
}
