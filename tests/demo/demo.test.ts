import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DemoReport } from '../../services/demo/demo.ts';
import { githubDeliveries } from '../../services/demo/traffic.ts';
import { runCli } from '../cli/run-cli.ts';

const SIZES = { records: 100, pageSize: 50, deliveries: 300, ingest: 40 };
const args = (sizes: typeof SIZES) => [
  '--records',
  String(sizes.records),
  '--page-size',
  String(sizes.pageSize),
  '--deliveries',
  String(sizes.deliveries),
  '--ingest',
  String(sizes.ingest),
  '--json',
];

async function demo(extra: string[], sizes = SIZES): Promise<DemoReport> {
  const result = await runCli(['demo', ...extra, ...args(sizes)], {}, 240_000);
  if (result.code !== 0) throw new Error(`demo exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout.trim().split('\n').at(-1)!) as DemoReport;
}

function distinctDeliveries(total: number): number {
  return githubDeliveries(total, 0.05).filter((d) => !d.retry).length;
}

describe('conveyor demo', () => {
  it('runs every stage end to end; verify finds nothing missing or duplicated; a second run adds nothing', {
    timeout: 300_000,
  }, async () => {
    const first = await demo(['--name', 'demotest', '--fresh']);
    const expected = SIZES.records + distinctDeliveries(SIZES.deliveries) + SIZES.ingest;
    expect(first.verify).toMatchObject({ missing: 0, duplicated: 0, extra: 0 });
    expect(first.new_events).toBe(expected);
    expect(first.stages.webhooks.duplicates).toBe(first.stages.webhooks.retries_sent);
    expect(first.stages.webhooks.retries_sent).toBeGreaterThan(0);
    expect(first.stages.pull.accepted).toBe(SIZES.records);
    expect(first.stages.relay.published).toBe(expected);
    expect(first.stages.sink.written).toBe(expected);
    expect(first.totals).toEqual({ events_in_postgres: expected, events_in_output: expected });

    const second = await demo(['--name', 'demotest']);
    expect(second.new_events).toBe(0);
    expect(second.stages.webhooks.accepted).toBe(0);
    expect(second.stages.ingest.duplicates).toBe(SIZES.ingest);
    expect(second.verify).toMatchObject({ missing: 0, duplicated: 0, extra: 0 });
    expect(second.output.fingerprint).toBe(first.output.fingerprint);
    expect(second.output.unchanged).toBe(true);

    // The lake is gone (another checkout, a deleted folder) while the database still holds the events:
    // the demo notices and starts fresh instead of reporting duplicates that are in no output.
    fs.rmSync(path.dirname(first.output.dir), { recursive: true, force: true });
    const third = await demo(['--name', 'demotest']);
    expect(third.new_events).toBe(expected);
    expect(third.verify).toMatchObject({ missing: 0, duplicated: 0, extra: 0 });
  });

  it('--chaos: the relay and the sink are killed with SIGKILL mid-stream, and verify still finds 0 missing, 0 duplicated', {
    timeout: 300_000,
  }, async () => {
    const sizes = { ...SIZES, deliveries: 600 };
    const report = await demo(['--chaos', '--name', 'demochaos', '--chaos-kills', '1'], sizes);
    const kills = report.chaos?.kills.map((k) => k.service).sort();
    expect(kills).toEqual(['relay', 'sink']);
    expect(report.new_events).toBe(sizes.records + distinctDeliveries(sizes.deliveries) + sizes.ingest);
    expect(report.verify).toMatchObject({ missing: 0, duplicated: 0, extra: 0 });
    expect(report.totals.events_in_output).toBe(report.totals.events_in_postgres);
  });
});
