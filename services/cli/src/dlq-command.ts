import type { Command } from 'commander';
import { createPool } from '../../../libs/db/index.ts';
import { createKafka } from '../../../libs/kafka/index.ts';
import { inspectDlq, replayDlq } from '../../sink/dlq.ts';
import { wholeNumberOption } from './options.ts';

export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('Inspect and replay the dead-letter topic (conveyor.dlq).');

  dlq
    .command('inspect')
    .description('Count DLQ records by stage/reason and show the first few of each.')
    .option('--samples <n>', 'records shown per reason (0 or more)', wholeNumberOption(0), 3)
    .option('--json', 'print one JSON object instead of a table')
    .action(async (options: { samples: number; json?: boolean }) => {
      const summary = await inspectDlq(createKafka({ clientId: 'conveyor-dlq' }), options.samples);
      if (options.json) {
        process.stdout.write(`${JSON.stringify(summary)}\n`);
        return;
      }
      const repeats =
        summary.repeats > 0
          ? ` (and ${summary.repeats} repeat(s) of them, sent again by batches retried after a crash)`
          : '';
      process.stdout.write(`${summary.total} rejected record(s) in the DLQ${repeats}\n`);
      for (const [reason, count] of Object.entries(summary.byReason)) {
        process.stdout.write(`  ${reason.padEnd(32)} ${count}\n`);
      }
      for (const s of summary.samples) {
        process.stdout.write(
          `- ${s.reason} event=${s.event_id} from=${s.original} at=${s.failed_at}\n    ${s.message}\n`,
        );
      }
    });

  dlq
    .command('replay')
    .description(
      'Replay DLQ records once their cause is fixed: sink records are re-published to their original topics with key, headers and event id preserved; relay records (outbox rows that did not fit their contract) are put back in the outbox for the relay. Replaying twice is harmless.',
    )
    .option('--reason <reason...>', 'only records with these reasons (e.g. unknown_schema encode_failed)')
    .option('--topic <topic...>', 'only records from these original topics')
    .option('--dry-run', 'say what would be replayed, change nothing')
    .action(async (options: { reason?: string[]; topic?: string[]; dryRun?: boolean }) => {
      const kafka = createKafka({ clientId: 'conveyor-dlq' });
      const pool = createPool({ max: 1, applicationName: 'conveyor-dlq' });
      const filter = { reasons: options.reason, topics: options.topic };
      try {
        const result = await replayDlq(kafka, pool, filter, { dryRun: options.dryRun });
        const verb = options.dryRun ? 'would be' : 'were';
        for (const [topic, count] of result.planned) process.stdout.write(`  ${topic.padEnd(40)} ${count}\n`);
        const total = [...result.planned.values()].reduce((sum, n) => sum + n, 0);
        process.stdout.write(
          options.dryRun ? `dry run: would re-publish ${total} record(s)\n` : `re-published ${result.sent} record(s)\n`,
        );
        if (result.plannedRequeues > 0) {
          const gone = result.plannedRequeues - result.requeued;
          process.stdout.write(
            `${result.requeued} outbox row(s) ${verb} put back for the relay` +
              (gone > 0 ? ` (${gone} not failed any more: put back already, or published)\n` : '\n'),
          );
        }
        if (result.notReplayable > 0) {
          process.stdout.write(
            `${result.notReplayable} matching record(s) name neither an original topic nor an outbox row: left alone\n`,
          );
        }
      } finally {
        await pool.end();
      }
    });
}
