import type { Command } from 'commander';
import { runSink } from '../../sink/main.ts';

export function registerSinkCommand(program: Command): void {
  program
    .command('sink')
    .description(
      'Consume the event topics into the lake (bronze JSONL, silver Parquet), deduped by event id, until SIGTERM. Several sinks share the partitions.',
    )
    .action(runSink);
}
