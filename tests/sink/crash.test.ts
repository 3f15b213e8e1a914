import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { DLQ_HEADER, DLQ_TOPIC, HEADER } from '../../libs/kafka/index.ts';
import { runCli } from '../cli/run-cli.ts';
import { testKafka, testPool, uniqueName } from '../helpers/real-stack.ts';
import { TestSource, tempLake, waitForCommitted } from './stack.ts';

const BIN = path.resolve(import.meta.dirname, '../../services/cli/bin/conveyor.mjs');
const pool = testPool(5);
const kafka = testKafka();

afterAll(async () => {
  await pool.end();
});

function spawnSink(env: NodeJS.ProcessEnv): {
  child: ChildProcess;
  exited: Promise<number | null>;
  output: () => string;
} {
  const child = spawn(process.execPath, [BIN, 'sink'], { env: { ...process.env, ...env } });
  let output = '';
  child.stdout?.on('data', (d) => {
    output += d;
  });
  child.stderr?.on('data', (d) => {
    output += d;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

/** One partition at a time, a short session (a dead sink's partitions move on quickly), warnings only. */
function sinkEnv(topic: string, group: string, lake: string) {
  return {
    SINK_TOPICS: topic,
    SINK_GROUP_ID: uniqueName(group),
    SINK_OUTPUT_DIR: lake,
    SINK_PORT: '0',
    SINK_PARTITIONS_CONCURRENTLY: '1',
    SINK_SESSION_TIMEOUT_MS: '6000',
    LOG_LEVEL: 'warn',
  };
}

async function committedTotal(groupId: string, topic: string): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [offsets] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return (offsets?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
  } finally {
    await admin.disconnect();
  }
}

describe('sink crash drill', () => {
  it('kill -9 at random points, repeated, with duplicates on the way: verify finds 0 missing, 0 duplicated', async () => {
    const src = await new TestSource(kafka, pool, 'sinkcrash').setup(3);
    const lake = tempLake();
    const env = {
      ...sinkEnv(src.topic, 'sink-crash', lake),
      // Small fetches: many batches, so kills land during writes and between write and commit.
      SINK_FETCH_MAX_BYTES: '6000',
    };
    const published: Awaited<ReturnType<TestSource['accept']>> = [];
    const progress: number[] = [];
    for (let round = 0; round < 6; round++) {
      const fresh = await src.accept(src.events(1500, { from: round * 1500, keys: 200 }));
      await src.publish(fresh);
      // The relay re-publishing part of an earlier batch after its own crash.
      if (published.length > 0) await src.publish(published.slice(-300));
      published.push(...fresh);

      const before = await committedTotal(env.SINK_GROUP_ID, src.topic);
      const sink = spawnSink(env);
      // Once this sink commits, kill it a random moment later: mid-batch, mid-write, or between write and commit.
      const deadline = Date.now() + 30_000;
      while ((await committedTotal(env.SINK_GROUP_ID, src.topic)) === before && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      await new Promise((r) => setTimeout(r, Math.random() * 500));
      sink.child.kill('SIGKILL');
      expect(await sink.exited).toBeNull();
      progress.push(await committedTotal(env.SINK_GROUP_ID, src.topic));
    }
    // At least one kill hit a sink that had committed some but not all of the topic.
    const admin = kafka.admin();
    await admin.connect();
    const end = (await admin.fetchTopicOffsets(src.topic)).reduce((sum, p) => sum + Number(p.high), 0);
    await admin.disconnect();
    expect(progress.some((p) => p < end)).toBe(true);

    // Info level, to see it running: the killed sinks may have committed everything already, and a
    // SIGTERM before the sink installs its handler would end it by the signal, not by a clean stop.
    const last = spawnSink({ ...env, LOG_LEVEL: 'info' });
    await waitForCommitted(kafka, env.SINK_GROUP_ID, [src.topic], 120_000);
    const deadline = Date.now() + 60_000;
    while (!last.output().includes('"msg":"sink running') && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
    }
    last.child.kill('SIGTERM');
    expect(await last.exited, last.output()).toBe(0);
    expect(last.output()).not.toContain('"level":50');

    const verify = await runCli(['verify', '--source', src.source, '--output', lake]);
    expect(verify.stdout).toContain(`bronze  accepted=9000 output_rows=9000 missing=0 duplicated=0 extra=0`);
    expect(verify.stdout).toContain(`silver  accepted=9000 output_rows=9000 missing=0 duplicated=0 extra=0`);
    expect(verify.code, verify.stderr).toBe(0);
  }, 300_000);

  it.each([
    ['before its fence check: it finds a newer epoch and writes nothing', 'sink-stop-before-fence'],
    ['inside its fence, about to write: the new holder waits for it, then rewrites', 'sink-stop-before-write'],
  ])(
    'a sink stalled past its session (a zombie) %s; nothing lost or duplicated',
    async (_, failpoint) => {
      const src = await new TestSource(kafka, pool, 'sinkzombie').setup(1);
      await src.publish(await src.accept(src.events(1500, { keys: 100 })));
      const lake = tempLake();
      const env = sinkEnv(src.topic, 'sink-zombie', lake);
      // A stops itself (SIGSTOP) with its first batch claimed and built.
      const zombie = spawnSink({ ...env, SINK_FILE_MAX_RECORDS: '50', CONVEYOR_FAILPOINT: failpoint });
      const stopped = () => fs.readFileSync(`/proc/${zombie.child.pid}/stat`, 'utf8').split(') ')[1]?.startsWith('T');
      for (const deadline = Date.now() + 30_000; !stopped(); ) {
        expect(Date.now() < deadline, zombie.output()).toBe(true);
        await new Promise((r) => setTimeout(r, 50));
      }
      // B, cutting its files elsewhere, gets the partition once A's session has expired.
      const taker = spawnSink({ ...env, SINK_FILE_MAX_RECORDS: '70' });
      await new Promise((r) => setTimeout(r, 12_000));
      // A wakes up with its batch in hand. Unfenced, its file of offsets 0-49 replaced B's of 0-69, and
      // 50-69 were lost.
      zombie.child.kill('SIGCONT');
      await waitForCommitted(kafka, env.SINK_GROUP_ID, [src.topic], 120_000);
      await new Promise((r) => setTimeout(r, 3000));
      zombie.child.kill('SIGTERM');
      taker.child.kill('SIGTERM');
      expect(await taker.exited, taker.output()).toBe(0);
      await zombie.exited;

      const verify = await runCli(['verify', '--source', src.source, '--output', lake]);
      expect(verify.stdout, `${verify.stdout}\n${zombie.output()}`).toContain(
        'bronze  accepted=1500 output_rows=1500 missing=0 duplicated=0 extra=0',
      );
      expect(verify.stdout).toContain('silver  accepted=1500 output_rows=1500 missing=0 duplicated=0 extra=0');
      if (failpoint === 'sink-stop-before-fence')
        expect(zombie.output()).toContain('partition taken over by another sink');
    },
    180_000,
  );

  it('verify exits non-zero and names the ids when events are missing; dlq inspect and replay --dry-run answer', async () => {
    const src = await new TestSource(kafka, pool, 'sinkcli').setup(1);
    await src.accept(src.events(3));
    const verify = await runCli(['verify', '--source', src.source, '--output', tempLake()]);
    expect(verify.code).toBe(1);
    expect(verify.stdout).toContain('bronze  accepted=3 output_rows=0 missing=3 duplicated=0 extra=0');
    const ids = [0, 1, 2].map((i) => `${src.source}/${src.source}-${i}`);
    expect(verify.stdout).toContain(`first missing: ${ids.join(', ')}`);

    const producer = kafka.producer();
    await producer.connect();
    await producer.send({
      topic: DLQ_TOPIC,
      messages: [
        {
          key: 'k',
          value: Buffer.from('x'),
          headers: {
            [HEADER.eventId]: 'e1',
            [DLQ_HEADER.reason]: 'not_wire_format',
            [DLQ_HEADER.stage]: 'sink',
            [DLQ_HEADER.originalTopic]: src.topic,
          },
        },
      ],
    });
    await producer.disconnect();
    const inspect = await runCli(['dlq', 'inspect', '--json']);
    expect(inspect.code, inspect.stderr).toBe(0);
    const summary = JSON.parse(inspect.stdout) as { total: number; byReason: Record<string, number> };
    expect(summary.byReason['sink/not_wire_format']).toBeGreaterThanOrEqual(1);

    const dry = await runCli(['dlq', 'replay', '--topic', src.topic, '--reason', 'not_wire_format', '--dry-run']);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.stdout).toContain('dry run: would re-publish 1 record(s)');
    const admin = kafka.admin();
    await admin.connect();
    const ends = await admin.fetchTopicOffsets(src.topic);
    await admin.disconnect();
    expect(ends.map((p) => p.high)).toEqual(['0']);
  });
});
