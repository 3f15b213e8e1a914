import type { Command } from 'commander';

export function registerWebhookCommand(program: Command): void {
  program
    .command('webhook')
    .description(
      'Serve POST /webhooks/:source (signed deliveries) and POST /ingest, /ingest/batch; answers 2xx only after commit. Runs until SIGTERM.',
    )
    // Loaded when run: a service loads only the packages it uses (see bin/bundle.mjs).
    .action(async () => (await import('../../webhook/main.ts')).runWebhook());
}
