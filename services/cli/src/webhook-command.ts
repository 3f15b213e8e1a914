import type { Command } from 'commander';
import { runWebhook } from '../../webhook/main.ts';

export function registerWebhookCommand(program: Command): void {
  program
    .command('webhook')
    .description(
      'Serve POST /webhooks/:source (signed deliveries) and POST /ingest, /ingest/batch; answers 2xx only after commit. Runs until SIGTERM.',
    )
    .action(runWebhook);
}
