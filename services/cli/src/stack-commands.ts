import { spawn } from 'node:child_process';
import fs from 'node:fs';
import type { Command } from 'commander';
import { postgresAnswers } from '../../../infra/stack/postgres.ts';
import { tail } from '../../../infra/stack/processes.ts';
import { describeDatabase, logFileOf, partState, stackDown, stackLayout, stackUp } from '../../../infra/stack/stack.ts';
import { wholeNumberOption } from './options.ts';

const say = (line: string) => process.stdout.write(`${line}\n`);

export function registerStackCommands(program: Command): void {
  const stack = program
    .command('stack')
    .description('Start, stop and inspect the local stack (Kafka, schema registry, Postgres) without Docker.');

  stack
    .command('up')
    .description('Start every part that is not running and wait until each is healthy.')
    .action(async () => {
      const started = Date.now();
      const layout = await stackLayout();
      if (!layout.parts.some((p) => p.name === 'postgres')) {
        say(`postgres  using the server at ${describeDatabase(layout.databaseUrl)}`);
      }
      const env = await stackUp(layout, say);
      say(`stack healthy in ${((Date.now() - started) / 1000).toFixed(1)}s. Use:`);
      for (const [name, value] of Object.entries(env)) say(`  export ${name}=${value}`);
    });

  stack
    .command('down')
    .description('Stop the processes `stack up` started (by recorded pid). Data is kept unless --purge.')
    .option('--purge', 'also delete the stack data (Kafka log, registry and embedded Postgres data)', false)
    .action(async (options: { purge: boolean }) => {
      await stackDown(await stackLayout(), say, { purge: options.purge });
    });

  stack
    .command('status')
    .description('Show each part with its pid, address and health. Exits 1 if a part is down or unhealthy.')
    .action(async () => {
      const layout = await stackLayout();
      let allHealthy = true;
      if (!layout.parts.some((p) => p.name === 'postgres')) {
        const up = await postgresAnswers(layout.databaseUrl);
        allHealthy &&= up;
        say(`${'postgres'.padEnd(9)} external  ${describeDatabase(layout.databaseUrl)}  ${up ? 'healthy' : 'DOWN'}`);
      }
      for (const part of layout.parts) {
        const state = await partState(layout, part);
        if (state.state === 'running') {
          allHealthy &&= state.healthy;
          say(
            `${part.name.padEnd(9)} pid ${String(state.pid).padEnd(7)} ${part.address.padEnd(16)} ${state.healthy ? 'healthy' : 'UNHEALTHY'}`,
          );
        } else {
          allHealthy = false;
          say(`${part.name.padEnd(9)} ${state.state === 'stale' ? `stopped (stale pid ${state.pid})` : 'stopped'}`);
        }
      }
      if (!allHealthy) process.exitCode = 1;
    });

  stack
    .command('logs')
    .description('Print the log of one part: kafka, registry or postgres (embedded only).')
    .argument('<part>', 'kafka | registry | postgres')
    .option('-n, --lines <n>', 'how many of the last lines to print (1 or more)', wholeNumberOption(1), 100)
    .option('-f, --follow', 'keep printing as the log grows', false)
    .action(async (partName: string, options: { lines: number; follow: boolean }) => {
      const layout = await stackLayout();
      const known = layout.parts.map((p) => p.name);
      if (!known.includes(partName as (typeof known)[number])) {
        throw new Error(`unknown part "${partName}"; expected one of: ${known.join(', ')}`);
      }
      const file = logFileOf(layout, partName);
      if (!fs.existsSync(file)) throw new Error(`no log for ${partName} yet (${file}); has it been started?`);
      if (options.follow) {
        spawn('tail', ['-n', String(options.lines), '-F', file], { stdio: 'inherit' });
        return;
      }
      say(tail(file, options.lines));
    });
}
