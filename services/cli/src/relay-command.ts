import type { Command } from 'commander';

export function registerRelayCommand(program: Command): void {
  program
    .command('relay')
    .description(
      'Publish the outbox to Kafka (Avro, registry-checked, order per key) until SIGTERM. Several relays share the shards.',
    )
    // Loaded when run: a service loads only the packages it uses (see bin/bundle.mjs).
    .action(async () => (await import('../../relay/main.ts')).runRelay());
}
