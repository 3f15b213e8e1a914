import type { Command } from 'commander';
import { createKafka } from '../../../libs/kafka/index.ts';
import { planReplay, readDlq, replay, summarise } from '../../sink/dlq.ts';

export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('Inspect and replay the dead-letter topic (conveyor.dlq).');

  dlq
    .command('inspect')
    .description('Count DLQ records by stage/reason and show the first few of each.')
    .option('--samples <n>', 'records shown per reason', '3')
    .option('--json', 'print one JSON object instead of a table')
    .action(async (options: { samples: string; json?: boolean }) => {
      const records = await readDlq(createKafka({ clientId: 'conveyor-dlq' }));
      const summary = summarise(records, Number(options.samples));
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
      const plan = planReplay(await readDlq(kafka), { reasons: options.reason, topics: options.topic });
      const planned = [...plan.byTopic.values()].reduce((sum, list) => sum + list.length, 0);
      for (const [topic, list] of plan.byTopic) process.stdout.write(`  ${topic.padEnd(40)} ${list.length}\n`);
      if (plan.notReplayable > 0) {
        process.stdout.write(
          `${plan.notReplayable} matching record(s) are not sink records (e.g. relay encode failures): fix them at the outbox\n`,
        );
      }
      if (options.dryRun) {
        process.stdout.write(`dry run: would replay ${planned} record(s)\n`);
        return;
      }
      const sent = await replay(kafka, plan);
      process.stdout.write(`replayed ${sent} record(s)\n`);
    });
}
