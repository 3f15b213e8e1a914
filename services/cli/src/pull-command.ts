import path from 'node:path';
import type { Command } from 'commander';
import { listSetting, portSetting, setting } from '../../../libs/config/index.ts';
import type { SourceDefinition } from '../../puller/definition.ts';
import type { PageProgress, RunStats } from '../../puller/engine.ts';

/** Exit codes for cron / Airflow / K8s: 0 done, 1 the run failed, 2 bad usage or definition, 3 already running. */
const EXIT = { failed: 1, usage: 2, busy: 3 } as const;

function fail(code: number, message: string): never {
  process.stderr.write(`conveyor pull: ${message}\n`);
  process.exit(code);
}

function summary(name: string, s: RunStats): string {
  if (s.skipped) return `${name}: skipped: ${s.skipped}`;
  const waited = (s.waitedMs / 1000).toFixed(1);
  return (
    `${name}: ${s.pages} page(s), ${s.records} record(s): ${s.accepted} new, ${s.duplicates} duplicate, ` +
    `${s.stale} stale, ${s.quarantined} quarantined${s.notModified ? ', not modified (ETag)' : ''}; ` +
    `${s.throttled} throttled, waited ${waited} s; checkpoint ${JSON.stringify(s.checkpoint)}` +
    (s.warning ? `; warning: ${s.warning}` : '')
  );
}

export function registerPullCommand(program: Command): void {
  program
    .command('pull')
    .description('Pull REST sources defined in definition files into the outbox, resuming from their checkpoints.')
    .option('--source <name>', 'the source to pull (see --list)')
    .option(
      '--all',
      'run every source (or those PULL_SOURCES names) on its schedule until interrupted (SIGINT / SIGTERM)',
    )
    .option('--once', 'one run of --source, then exit (for cron, Airflow, K8s CronJob)')
    .option('--list', 'list the known sources and exit')
    .option('--wait-lease <seconds>', 'with --once: wait this long for a run of the same source elsewhere to end', '0')
    .option('--quiet', 'no per-page progress on stderr')
    .action(
      async (opts: {
        source?: string;
        all?: boolean;
        once?: boolean;
        list?: boolean;
        waitLease: string;
        quiet?: boolean;
      }) => {
        // Loaded when run, as the services are (see bin/bundle.mjs).
        const [
          { createPool },
          { createMetrics, startOpsServer },
          { DefinitionError, loadDefinitions },
          { newOwner },
          { PullMetrics },
          { LeaseBusyError, pullOnce, runScheduler },
        ] = await Promise.all([
          import('../../../libs/db/index.ts'),
          import('../../../libs/observability/index.ts'),
          import('../../puller/definition.ts'),
          import('../../puller/lease.ts'),
          import('../../puller/metrics.ts'),
          import('../../puller/runner.ts'),
        ]);
        let defs: Map<string, SourceDefinition>;
        try {
          defs = await loadDefinitions([path.resolve(setting('CONVEYOR_SOURCES_DIR'))]);
        } catch (error) {
          if (error instanceof DefinitionError) fail(EXIT.usage, `invalid source definition: ${error.message}`);
          throw error;
        }
        if (opts.list) {
          for (const def of defs.values()) process.stdout.write(`${def.name}\t${def.file}\n`);
          return;
        }
        if (!opts.all && !(opts.source && opts.once)) fail(EXIT.usage, 'give --source <name> --once, or --all');
        if (opts.all && opts.source) fail(EXIT.usage, '--all and --source exclude each other');
        const waitLease = Number(opts.waitLease);
        if (!Number.isFinite(waitLease) || waitLease < 0)
          fail(EXIT.usage, `--wait-lease: not a number of seconds: ${opts.waitLease}`);
        // At least a second: the lease is renewed every third of it, and a shorter one is lost between
        // renewals (PULL_LEASE_SECONDS=0.001 failed every run with "lease … was lost").
        const leaseRaw = setting('PULL_LEASE_SECONDS');
        const leaseSeconds = /^\d+(\.\d+)?$/.test(leaseRaw) ? Number(leaseRaw) : Number.NaN;
        if (!(leaseSeconds >= 1)) fail(EXIT.usage, `PULL_LEASE_SECONDS: expected seconds >= 1, got "${leaseRaw}"`);

        const log = (line: string) => {
          if (!opts.quiet) process.stderr.write(`${line}\n`);
        };
        const pool = createPool({ max: 4, applicationName: 'conveyor-pull' });
        const base = {
          pool,
          owner: newOwner(),
          leaseTtlMs: leaseSeconds * 1000,
          waitLeaseMs: waitLease * 1000,
          onPage: (p: PageProgress) =>
            log(
              `page ${p.page}: ${p.records} records (${p.accepted} new, ${p.duplicates} dup, ${p.stale} stale, ${p.quarantined} quarantined) ${p.url}`,
            ),
          onWait: (w: { url: string; reason: string; ms: number; status?: number }) =>
            log(
              `waiting ${(w.ms / 1000).toFixed(2)} s (${w.reason}${w.status ? ` after ${w.status}` : ''}) for ${w.url}`,
            ),
        };
        try {
          if (opts.all) {
            const chosen = [...new Set(listSetting('PULL_SOURCES'))];
            const unknown = chosen.filter((name) => !defs.has(name));
            if (unknown.length > 0) {
              fail(
                EXIT.usage,
                `PULL_SOURCES: unknown source(s) ${unknown.join(', ')}; known: ${[...defs.keys()].join(', ')}`,
              );
            }
            const scheduled = chosen.length > 0 ? chosen.map((name) => defs.get(name)!) : [...defs.values()];
            const controller = new AbortController();
            const stop = (signal: string) => () => controller.abort(new Error(`stopping on ${signal}`));
            process.once('SIGINT', stop('SIGINT'));
            process.once('SIGTERM', stop('SIGTERM'));
            const metrics = new PullMetrics(
              createMetrics('puller'),
              pool,
              scheduled.map((d) => d.name),
            );
            const ops = await startOpsServer({
              port: portSetting('PULL_PORT', process.env, { anyFree: true }),
              setting: 'PULL_PORT',
              metrics: metrics.registry,
              healthy: () => !controller.signal.aborted,
              ready: () =>
                pool.query('SELECT 1').then(
                  () => true,
                  () => false,
                ),
            });
            // Not subject to --quiet: with PULL_PORT=0 this line is the only way to find the port.
            process.stderr.write(`scheduler: /metrics /healthz /readyz on http://${setting('OPS_HOST')}:${ops.port}\n`);
            log(`scheduler: ${scheduled.length} source(s): ${scheduled.map((d) => d.name).join(', ')}`);
            try {
              await runScheduler(scheduled, {
                ...base,
                waitLeaseMs: 0,
                metrics,
                signal: controller.signal,
                onRun: (name, outcome) =>
                  outcome instanceof Error
                    ? log(`${name}: run failed: ${outcome.message}`)
                    : log(summary(name, outcome)),
              });
            } finally {
              await ops.close();
            }
            return;
          }
          const def = defs.get(opts.source!);
          if (!def) fail(EXIT.usage, `unknown source "${opts.source}"; known: ${[...defs.keys()].join(', ')}`);
          try {
            const stats = await pullOnce(def, base);
            process.stdout.write(`${summary(def.name, stats)}\n`);
          } catch (error) {
            if (error instanceof LeaseBusyError) fail(EXIT.busy, error.message);
            fail(EXIT.failed, `run of ${def.name} failed, checkpoint left where it was: ${(error as Error).message}`);
          }
        } finally {
          await pool.end();
        }
      },
    );
}
