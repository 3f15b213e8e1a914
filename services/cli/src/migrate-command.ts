import type { Command } from 'commander';
import { redactUrl } from '../../../libs/config/index.ts';
import { databaseUrl, migrate } from '../../../libs/db/index.ts';

export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('Apply pending SQL migrations to DATABASE_URL (creating the database if needed). Safe to repeat.')
    .action(async () => {
      const url = databaseUrl();
      const applied = await migrate({ url });
      if (applied.length === 0) {
        process.stdout.write(`${redactUrl(url)}: up to date, nothing applied\n`);
      } else {
        process.stdout.write(`${redactUrl(url)}: applied ${applied.length} migration(s): ${applied.join(', ')}\n`);
      }
    });
}
