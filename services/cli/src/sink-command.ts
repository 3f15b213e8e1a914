import type { Command } from 'commander';

export function registerSinkCommand(program: Command): void {
  program
    .command('sink')
    .description(
      'Consume the event topics into the lake (bronze JSONL, silver Parquet), deduped by event id, until SIGTERM. Several sinks share the partitions.',
    )
    // Loaded when run: a service loads only the packages it uses (see bin/bundle.mjs).
    .action(async () => (await import('../../sink/main.ts')).runSink());
}
