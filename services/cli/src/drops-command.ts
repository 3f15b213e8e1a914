import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Command, InvalidArgumentError, Option } from 'commander';
import type { FileOutcome } from '../../drops/ingest.ts';
import { wholeNumberOption } from './options.ts';

/** Exit codes: 0 every file ingested or skipped, 1 a file refused, the run stopped or failed, 2 bad usage. */
const EXIT = { failed: 1, usage: 2 } as const;

const SOURCE_NAME = /^[A-Za-z0-9._-]+$/;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

function durationOption(value: string): number {
  const match = DURATION.exec(value.trim());
  const ms = match ? Number(match[1]) * UNIT_MS[match[2]!]! : 0;
  if (!(ms > 0)) throw new InvalidArgumentError('expected a duration such as 500ms, 30s, 5m, 1h.');
  return ms;
}

function fail(code: number, message: string): never {
  process.stderr.write(`conveyor drops: ${message}\n`);
  process.exit(code);
}

function describe(outcome: FileOutcome): string {
  switch (outcome.status) {
    case 'ingested':
      return (
        `${outcome.file}: ${outcome.records} record(s): ${outcome.accepted} new, ${outcome.duplicates} duplicate` +
        `${outcome.resumedAfter > 0 ? `, resumed after record ${outcome.resumedAfter}` : ''} (sha256 ${outcome.sha256.slice(0, 12)})`
      );
    case 'already-processed':
      return `${outcome.file}: skipped: its content was already processed (as ${outcome.firstName}, ${outcome.processedAt.toISOString()})`;
    case 'interrupted':
      return `${outcome.file}: stopped after record ${outcome.recordsDone} of ${outcome.records} (committed; the next pass resumes there)`;
    case 'unsettled':
      return `${outcome.file}: still being written (size or mtime changed); left for the next pass`;
    case 'unknown-format':
      return `${outcome.file}: not .csv, .json, .ndjson, .jsonl or .parquet; left alone`;
    case 'refused':
      return `refused ${outcome.error}`;
  }
}

function summary(source: string, outcomes: readonly FileOutcome[]): string {
  const count = (status: FileOutcome['status']) => outcomes.filter((o) => o.status === status).length;
  const newEvents = outcomes.reduce((sum, o) => sum + (o.status === 'ingested' ? o.accepted : 0), 0);
  return (
    `drops ${source}: ${count('ingested')} file(s) ingested (${newEvents} new event(s)), ` +
    `${count('already-processed')} already processed, ${count('refused')} refused, ` +
    `${count('unsettled')} still being written` +
    (count('interrupted') > 0 ? `, ${count('interrupted')} stopped part-way` : '')
  );
}

export function registerDropsCommand(program: Command): void {
  program
    .command('drops')
    .description(
      'Ingest the CSV, JSON, NDJSON and Parquet files dropped in a folder into the outbox, each file once (by content).',
    )
    .requiredOption('--source <name>', 'the source the events belong to (letters, digits, ".", "_", "-")')
    .requiredOption('--dir <path>', 'the folder to read (not its subfolders; dotfiles are skipped)')
    .addOption(
      new Option('--format <format>', 'how to read the files; auto: by extension')
        .choices(['auto', 'csv', 'json', 'ndjson', 'parquet'])
        .default('auto'),
    )
    .option('--key <column>', "the column whose value is each event's entity key (default: the file's name)")
    .option('--event-type <type>', 'the event type of every record', 'drop.record')
    .option('--time <column>', "the column holding the event time, ISO 8601 or epoch (default: the file's mtime)")
    .option('--once', 'one pass over the folder, then exit (for cron, Airflow, K8s CronJob)')
    .option('--watch <interval>', 'a pass every interval (500ms, 30s, 5m) until SIGINT / SIGTERM', durationOption)
    .option(
      '--settle <ms>',
      'a file is read only when its size and mtime are the same at two looks this far apart',
      wholeNumberOption(0),
      1000,
    )
    .option('--chunk <records>', 'records per transaction (progress is kept per chunk)', wholeNumberOption(1), 5000)
    .action(
      async (opts: {
        source: string;
        dir: string;
        format: 'auto' | 'csv' | 'json' | 'ndjson' | 'parquet';
        key?: string;
        eventType: string;
        time?: string;
        once?: boolean;
        watch?: number;
        settle: number;
        chunk: number;
      }) => {
        if (!opts.once === (opts.watch === undefined)) fail(EXIT.usage, 'give one of --once or --watch <interval>');
        if (!SOURCE_NAME.test(opts.source)) {
          fail(EXIT.usage, `--source: "${opts.source}" may contain only letters, digits, ".", "_" and "-"`);
        }
        if (opts.eventType.trim() === '') fail(EXIT.usage, '--event-type: must not be empty');
        const folder = await stat(opts.dir).catch(() => undefined);
        if (!folder?.isDirectory()) fail(EXIT.usage, `--dir: ${opts.dir} is not a folder`);

        // Loaded when run, as the services are (see bin/bundle.mjs).
        const [{ createPool }, { ingestDrops }, { LocalDirDropStorage }] = await Promise.all([
          import('../../../libs/db/index.ts'),
          import('../../drops/ingest.ts'),
          import('../../drops/storage.ts'),
        ]);
        const pool = createPool({ max: 2, applicationName: 'conveyor-drops' });
        // SIGINT / SIGTERM stop the run before its next file or chunk: what is committed stays.
        const controller = new AbortController();
        const stop = () => controller.abort();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // A file still being written or of no known format is reported once, not on every pass of --watch.
        const told = new Set<string>();
        const options = {
          pool,
          source: opts.source,
          storage: new LocalDirDropStorage(opts.dir),
          format: opts.format,
          keyColumn: opts.key,
          eventType: opts.eventType,
          timeColumn: opts.time,
          chunkRecords: opts.chunk,
          settleMs: opts.settle,
          done: new Map<string, string>(),
          signal: controller.signal,
          onFile: (outcome: FileOutcome) => {
            const line = describe(outcome);
            if (outcome.status === 'unsettled' || outcome.status === 'unknown-format') {
              if (told.has(line)) return;
              told.add(line);
            }
            if (outcome.status === 'refused') process.stderr.write(`conveyor drops: ${line}\n`);
            else process.stdout.write(`${line}\n`);
          },
        };
        try {
          if (opts.once) {
            const outcomes = await ingestDrops(options);
            process.stdout.write(`${summary(opts.source, outcomes)}\n`);
            if (controller.signal.aborted) {
              process.stderr.write('conveyor drops: stopped on a signal before the end of the pass; a rerun resumes\n');
            }
            if (controller.signal.aborted || outcomes.some((o) => o.status === 'refused'))
              process.exitCode = EXIT.failed;
            return;
          }
          while (!controller.signal.aborted) {
            await ingestDrops(options);
            await sleep(opts.watch, undefined, { signal: controller.signal }).catch(() => undefined);
          }
        } catch (error) {
          fail(EXIT.failed, `pass over ${opts.dir} failed: ${(error as Error).message}`);
        } finally {
          await pool.end();
        }
      },
    );
}
