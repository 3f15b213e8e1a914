import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testKafka, uniqueName } from '../helpers/real-stack.ts';
import { runCli } from './run-cli.ts';

const home = fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-ops-port-'));

/** The state of a consumer group: 'Dead' when no member has ever joined it. */
async function groupState(groupId: string): Promise<string> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const { groups } = await admin.describeGroups([groupId]);
    return groups[0]?.state ?? 'Dead';
  } finally {
    await admin.disconnect();
  }
}

describe('the ops port of the sink, relay and pull scheduler', () => {
  let taken: net.Server;
  let port: number;
  beforeAll(async () => {
    taken = net.createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    port = (taken.address() as net.AddressInfo).port;
  });
  afterAll(() => {
    taken.close();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('SINK_PORT out of range fails naming it, before the sink joins its consumer group', async () => {
    const group = uniqueName('ops-port-sink');
    const result = await runCli(['sink'], { SINK_PORT: '70000', SINK_GROUP_ID: group, CONVEYOR_HOME: home }, 60_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('conveyor: SINK_PORT: expected a TCP port (0-65535), got "70000"');
    expect(await groupState(group)).toBe('Dead');
  });

  it('a taken SINK_PORT fails naming it, before the sink joins its consumer group', async () => {
    const group = uniqueName('ops-port-sink');
    const result = await runCli(
      ['sink'],
      { SINK_PORT: String(port), SINK_GROUP_ID: group, CONVEYOR_HOME: home },
      60_000,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`conveyor: SINK_PORT: port ${port} on 127.0.0.1 is already in use`);
    expect(await groupState(group)).toBe('Dead');
  });

  it('a taken RELAY_PORT fails naming it', async () => {
    const result = await runCli(['relay'], { RELAY_PORT: String(port), CONVEYOR_HOME: home }, 60_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`conveyor: RELAY_PORT: port ${port} on 127.0.0.1 is already in use`);
  });

  it('a taken PULL_PORT fails naming it', async () => {
    const result = await runCli(['pull', '--all'], { PULL_PORT: String(port), CONVEYOR_HOME: home }, 60_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`conveyor: PULL_PORT: port ${port} on 127.0.0.1 is already in use`);
  });
});
