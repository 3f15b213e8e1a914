import { Command, CommanderError } from 'commander';
import { registerDemoCommand } from './demo-command.ts';
import { registerDlqCommands } from './dlq-command.ts';
import { registerDropsCommand } from './drops-command.ts';
import { registerMigrateCommand } from './migrate-command.ts';
import { registerPullCommand } from './pull-command.ts';
import { registerQueryCommand } from './query-command.ts';
import { registerRelayCommand } from './relay-command.ts';
import { registerSchemaCommands } from './schema-command.ts';
import { registerSinkCommand } from './sink-command.ts';
import { registerStackCommands } from './stack-commands.ts';
import { registerVerifyCommand } from './verify-command.ts';
import { registerVolumeCommand } from './volume-command.ts';
import { registerWebhookCommand } from './webhook-command.ts';

const program = new Command()
  .name('conveyor')
  .description('Ingestion into Kafka and a partitioned dataset: safe to retry, safe to replay.')
  .showHelpAfterError()
  .exitOverride();

registerDemoCommand(program);
registerStackCommands(program);
registerMigrateCommand(program);
registerPullCommand(program);
registerDropsCommand(program);
registerRelayCommand(program);
registerSchemaCommands(program);
registerSinkCommand(program);
registerDlqCommands(program);
registerVerifyCommand(program);
registerVolumeCommand(program);
registerQueryCommand(program);
registerWebhookCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) process.exit(error.exitCode);
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`conveyor: ${message}\n`);
  process.exit(1);
}
