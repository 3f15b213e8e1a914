import type { Command } from 'commander';
import { runRelay } from '../../relay/main.ts';

export function registerRelayCommand(program: Command): void {
  program
    .command('relay')
    .description(
      'Publish the outbox to Kafka (Avro, registry-checked, order per key) until SIGTERM. Several relays share the shards.',
    )
    .action(runRelay);
}
