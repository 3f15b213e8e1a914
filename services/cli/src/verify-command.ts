import type { Command } from 'commander';
import { memorySizeOption } from './options.ts';

interface VerifyFlags {
  source?: string[];
  layer: string[];
  output?: string;
  json?: boolean;
  memory?: string;
}

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description(
      'Compare the accepted events (raw_events) with the event ids in the lake: missing, duplicated and extra per layer. Exits 1 unless all are 0.',
    )
    .option('-s, --source <name...>', 'only these sources')
    .option('--layer <layer...>', 'bronze and/or silver', ['bronze', 'silver'])
    .option('--output <dir>', 'lake root (default: SINK_OUTPUT_DIR)')
    .option('--json', 'print one JSON line per layer')
    .option(
      '--memory <size>',
      "DuckDB's memory limit for the counts: a number and a unit (B, KB…TB, KiB…TiB), e.g. 2GB (default 512MB; they spill to disk beyond it)",
      memorySizeOption,
    )
    .action(async (options: VerifyFlags) => {
      const layers = options.layer.map((l) => {
        if (l !== 'bronze' && l !== 'silver') throw new Error(`--layer: expected bronze or silver, got "${l}"`);
        return l;
      });
      // Loaded when run, as the services are (see bin/bundle.mjs).
      const [{ createPool }, { LocalDirStorage }, { outputDir }, { isClean, verifyOutput }] = await Promise.all([
        import('../../../libs/db/index.ts'),
        import('../../../libs/lake/storage.ts'),
        import('../../sink/main.ts'),
        import('../../sink/verify.ts'),
      ]);
      const pool = createPool({ max: 1, applicationName: 'conveyor-verify' });
      try {
        const storage = new LocalDirStorage(options.output ?? outputDir());
        const reports = await verifyOutput(pool, storage, {
          sources: options.source ?? [],
          layers,
          memoryLimit: options.memory,
          progress: (line) => process.stderr.write(`verify: ${line}\n`),
        });
        for (const r of reports) {
          if (options.json) {
            process.stdout.write(`${JSON.stringify(r)}\n`);
            continue;
          }
          process.stdout.write(
            `${r.layer.padEnd(7)} accepted=${r.accepted} output_rows=${r.rowsInOutput} missing=${r.missing} duplicated=${r.duplicated} extra=${r.extra}\n`,
          );
          for (const kind of ['missing', 'duplicated', 'extra'] as const) {
            if (r.examples[kind].length > 0) process.stdout.write(`  first ${kind}: ${r.examples[kind].join(', ')}\n`);
          }
        }
        if (!isClean(reports)) process.exitCode = 1;
      } finally {
        await pool.end();
      }
    });
}
