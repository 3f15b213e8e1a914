import type { Command } from 'commander';
import { topicFor } from '../../../libs/outbox/index.ts';
import { contractFor, DEFAULT_SCHEMAS_DIR, declaredSources } from '../../../libs/registry/contracts.ts';
import { SchemaRegistryClient, valueSubject } from '../../../libs/registry/index.ts';

interface SchemaOptions {
  source?: string[];
  dir: string;
}

function sourcesOf(options: SchemaOptions): string[] {
  const sources = options.source?.length ? options.source : declaredSources(options.dir);
  if (sources.length === 0) throw new Error(`no source contracts in ${options.dir}/sources and no --source given`);
  return sources;
}

export function registerSchemaCommands(program: Command): void {
  const schema = program
    .command('schema')
    .description("Check and register the topics' Avro contracts (schemas/avro) against the schema registry.");

  const addOptions = (command: Command) =>
    command
      .option('-s, --source <name...>', 'sources to act on (default: every schemas/avro/sources/*.avsc)')
      .option('--dir <path>', 'folder holding envelope.avsc and sources/', DEFAULT_SCHEMAS_DIR);

  addOptions(
    schema
      .command('check')
      .description(
        "The relay's schema gate, for CI: exits 1 when a contract is incompatible with its subject's registered versions under the subject's compatibility level, naming the fields.",
      ),
  ).action(async (options: SchemaOptions) => {
    const registry = new SchemaRegistryClient();
    let failed = 0;
    for (const source of sourcesOf(options)) {
      const subject = valueSubject(topicFor(source));
      const { level, problems } = await registry.check(subject, contractFor(source, options.dir).schema);
      if (problems.length === 0) {
        process.stdout.write(`ok    ${subject} (${level})\n`);
      } else {
        failed++;
        process.stdout.write(`FAIL  ${subject} (${level})\n${problems.map((p) => `      - ${p}\n`).join('')}`);
      }
    }
    if (failed > 0) {
      process.stderr.write(`conveyor: ${failed} contract(s) would break consumers; nothing was registered\n`);
      process.exitCode = 1;
    }
  });

  addOptions(
    schema
      .command('register')
      .description('Run the gate, then register each compatible contract as a new version of its subject.'),
  ).action(async (options: SchemaOptions) => {
    const registry = new SchemaRegistryClient();
    for (const source of sourcesOf(options)) {
      const subject = valueSubject(topicFor(source));
      const id = await registry.gate(subject, contractFor(source, options.dir).schema, { autoRegister: true });
      process.stdout.write(`registered ${subject} as schema id ${id}\n`);
    }
  });
}
