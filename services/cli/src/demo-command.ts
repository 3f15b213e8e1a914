import type cliProgress from 'cli-progress';
import type { Command } from 'commander';
import type { DemoOptions, DemoProgress, DemoReport, runDemo, StageName } from '../../demo/demo.ts';

interface DemoFlags {
  name?: string;
  records: string;
  pageSize: string;
  deliveries: string;
  retryShare: string;
  ingest: string;
  chaos?: boolean;
  chaosKills: string;
  fresh?: boolean;
  json?: boolean;
  keepRunning?: boolean;
  timeout: string;
}

function count(flag: string, value: string, min: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min) throw new Error(`${flag}: expected a whole number >= ${min}, got "${value}"`);
  return n;
}

/** Bars on a terminal; on a pipe or in CI, a plain line per stage every few seconds and when it completes. */
function progressReporter(
  progressBars: typeof cliProgress,
  stages: readonly StageName[],
): DemoProgress & { stop(): void } {
  if (process.stderr.isTTY) {
    const multi = new progressBars.MultiBar(
      {
        stream: process.stderr,
        format: ' {stage} |{bar}| {value}/{total}',
        barsize: 30,
        hideCursor: true,
        clearOnComplete: false,
      },
      progressBars.Presets.shades_classic,
    );
    const byStage = new Map<StageName, cliProgress.SingleBar>();
    for (const stage of stages) byStage.set(stage, multi.create(1, 0, { stage: stage.padEnd(9) }));
    return {
      log: (line) => multi.log(`${line}\n`),
      stage: (stage, value, total) => {
        const bar = byStage.get(stage)!;
        bar.setTotal(Math.max(total, 1));
        bar.update(value);
      },
      stop: () => multi.stop(),
    };
  }
  const last = new Map<StageName, { line: string; at: number }>();
  return {
    log: (line) => process.stderr.write(`${line}\n`),
    stage: (stage, value, total) => {
      const line = `${stage}: ${value}/${total}`;
      const previous = last.get(stage);
      if (previous?.line === line) return;
      const done = value >= total && total > 0;
      if (!done && previous && Date.now() - previous.at < 3000) return;
      last.set(stage, { line, at: Date.now() });
      process.stderr.write(`${line}${done ? ' done' : ''}\n`);
    },
    stop: () => undefined,
  };
}

function formatReport(r: DemoReport): string {
  const s = r.stages;
  const rejected = (map: Record<string, number>) =>
    Object.keys(map).length === 0
      ? ''
      : ` rejected ${Object.entries(map)
          .map(([k, v]) => `${k}:${v}`)
          .join(' ')}`;
  const ok = r.verify.missing === 0 && r.verify.duplicated === 0 && r.verify.extra === 0;
  const lines = [
    '',
    `Conveyor demo "${r.demo}" in ${r.duration_s} s: ${r.new_events} new event(s) this run`,
    '',
    'stage      received  accepted  duplicates',
    `pull       ${pad(s.pull.received)}${pad(s.pull.accepted)}${pad(s.pull.duplicates)}  (${s.pull.pages} pages, ${s.pull.throttled} throttled, waited ${s.pull.waited_s} s)`,
    `webhooks   ${pad(s.webhooks.received)}${pad(s.webhooks.accepted)}${pad(s.webhooks.duplicates)}  (${s.webhooks.retries_sent} provider retries sent)${rejected(s.webhooks.rejected)}`,
    `ingest     ${pad(s.ingest.received)}${pad(s.ingest.accepted)}${pad(s.ingest.duplicates)}${rejected(s.ingest.rejected)}`,
    '',
    `relay      published ${s.relay.published}, to DLQ ${s.relay.failed_to_dlq}`,
    `sink       consumed ${s.sink.consumed}, written ${s.sink.written}, duplicates dropped ${s.sink.duplicates_dropped}, DLQ ${s.sink.dlq}`,
  ];
  if (r.chaos) {
    lines.push('', `fault drill: ${r.chaos.kills.length} kill -9`);
    for (const k of r.chaos.kills) lines.push(`  ${k.service.padEnd(6)} killed at ${k.at}`);
  }
  lines.push(
    '',
    `verify     ${ok ? 'OK' : 'FAILED'}: missing ${r.verify.missing}, duplicated ${r.verify.duplicated}, extra ${r.verify.extra}`,
  );
  for (const l of r.verify.layers) {
    lines.push(
      `  ${l.layer.padEnd(7)} accepted ${l.accepted}, in output ${l.rowsInOutput}: missing ${l.missing}, duplicated ${l.duplicated}, extra ${l.extra}`,
    );
  }
  const unchanged =
    r.output.unchanged === null
      ? 'no earlier run to compare'
      : r.output.unchanged
        ? 'unchanged since the last run'
        : 'changed since the last run';
  lines.push(
    `totals     ${r.totals.events_in_postgres} events in Postgres, ${r.totals.events_in_output} in the lake`,
    '',
    `output     ${r.output.dir}`,
    `           ${r.output.files} files, ${r.output.bytes} bytes, fingerprint ${r.output.fingerprint} (${unchanged})`,
    '',
    'look at it with DuckDB (these run as they are; the SQL alone works in the duckdb CLI or any DuckDB client):',
    ...r.duckdb.map((q) => `  npx conveyor query "${q}"`),
  );
  if (r.services) {
    lines.push('', 'services left running (Ctrl-C stops them):');
    for (const [name, where] of Object.entries(r.services)) lines.push(`  ${name.padEnd(8)} ${where}`);
  }
  return `${lines.join('\n')}\n`;
}

function pad(n: number): string {
  return String(n).padStart(8).padEnd(10);
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description(
      'Run the whole pipeline on bundled simulators (a rate-limited REST API, signed webhooks with provider retries, an ingest batch), wait until the lake has caught up, and print a report with the verify result. Exits 1 unless verify finds 0 missing, 0 duplicated, 0 extra.',
    )
    .option(
      '--name <name>',
      'demo name: its database conveyor_<name>, sources <name>-*, lake under CONVEYOR_HOME/<name> (default: demo, or chaos with --chaos)',
    )
    .option('--records <n>', 'records the simulated REST API serves', '500')
    .option('--page-size <n>', 'records per page of the REST API', '100')
    .option('--deliveries <n>', 'signed webhook deliveries to send (provider retries included)', '1500')
    .option('--retry-share <fraction>', 'share of deliveries that re-send an earlier delivery', '0.05')
    .option('--ingest <n>', 'events to POST to /ingest/batch', '200')
    .option('--chaos', 'fault drill: SIGKILL the relay and the sink mid-stream and restart them (starts fresh)')
    .option('--chaos-kills <n>', 'with --chaos: kills of each of the relay and the sink', '3')
    .option('--fresh', 'drop the demo database, lake, topics and consumer group first')
    .option('--json', 'print the report as one JSON object on stdout')
    .option('--keep-running', 'leave the webhook service, relay and sink running until Ctrl-C')
    .option('--timeout <seconds>', 'give up when the pipeline has not caught up after this long', '300')
    .action(async (flags: DemoFlags) => {
      const chaos = Boolean(flags.chaos);
      const retryShare = Number(flags.retryShare);
      if (!(retryShare >= 0 && retryShare < 1)) {
        throw new Error(`--retry-share: expected a fraction in [0, 1), got "${flags.retryShare}"`);
      }
      const options: DemoOptions = {
        name: flags.name ?? (chaos ? 'chaos' : 'demo'),
        records: count('--records', flags.records, 0),
        pageSize: count('--page-size', flags.pageSize, 1),
        deliveries: count('--deliveries', flags.deliveries, 0),
        retryShare,
        ingest: count('--ingest', flags.ingest, 0),
        chaosKills: chaos ? count('--chaos-kills', flags.chaosKills, 1) : 0,
        // A drill needs events in flight to kill into; a re-run of the same data would find only duplicates.
        fresh: Boolean(flags.fresh) || chaos,
        timeoutMs: count('--timeout', flags.timeout, 1) * 1000,
      };
      // Loaded when run, as the services are (see bin/bundle.mjs).
      const [{ default: progressBars }, demo] = await Promise.all([
        import('cli-progress'),
        import('../../demo/demo.ts'),
      ]);
      const progress = progressReporter(progressBars, demo.STAGES);
      let run: Awaited<ReturnType<typeof runDemo>>;
      try {
        run = await demo.runDemo(options, progress, Boolean(flags.keepRunning));
      } finally {
        progress.stop();
      }
      const { report } = run;
      process.stdout.write(flags.json ? `${JSON.stringify(report)}\n` : formatReport(report));
      if (report.verify.missing + report.verify.duplicated + report.verify.extra > 0) process.exitCode = 1;
      if (flags.keepRunning) {
        await new Promise<void>((resolve) => {
          process.once('SIGINT', () => resolve());
          process.once('SIGTERM', () => resolve());
        });
        process.stderr.write('stopping the services (they finish and commit first)\n');
        await run.stop();
      }
    });
}
