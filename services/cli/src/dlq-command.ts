import type { Command } from 'commander';
import { createKafka } from '../../../libs/kafka/index.ts';
import { inspectDlq, replayDlq } from '../../sink/dlq.ts';

export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('Inspect and replay the dead-letter topic (conveyor.dlq).');

  dlq
    .command('inspect')
    .description('Count DLQ records by stage/reason and show the first few of each.')
    .option('--samples <n>', 'records shown per reason', '3')
    .option('--json', 'print one JSON object instead of a table')
    .action(async (options: { samples: string; json?: boolean }) => {
      const summary = await inspectDlq(createKafka({ clientId: 'conveyor-dlq' }), Number(options.samples));
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
      'Re-publish sink-stage DLQ records to their original topics with key, headers and event id preserved (the sink dedupes, so replaying twice is harmless).',
    )
    .option('--reason <reason...>', 'only records with these reasons (e.g. unknown_schema bad_event_time)')
    .option('--topic <topic...>', 'only records from these original topics')
    .option('--dry-run', 'say what would be replayed, publish nothing')
    .action(async (options: { reason?: string[]; topic?: string[]; dryRun?: boolean }) => {
      const kafka = createKafka({ clientId: 'conveyor-dlq' });
      const filter = { reasons: options.reason, topics: options.topic };
      const { planned, notReplayable, sent } = await replayDlq(kafka, filter, { dryRun: options.dryRun });
      for (const [topic, count] of planned) process.stdout.write(`  ${topic.padEnd(40)} ${count}\n`);
      if (notReplayable > 0) {
        process.stdout.write(
          `${notReplayable} matching record(s) are not sink records (e.g. relay encode failures): fix them at the outbox\n`,
        );
      }
      const total = [...planned.values()].reduce((sum, n) => sum + n, 0);
      if (options.dryRun) process.stdout.write(`dry run: would replay ${total} record(s)\n`);
      else process.stdout.write(`replayed ${sent} record(s)\n`);
    });
}
