import os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, startOpsServer } from '../../libs/observability/index.ts';

// An address of this machine other than loopback: how a probe or a scrape from outside arrives.
const external = Object.values(os.networkInterfaces())
  .flat()
  .find((a) => a?.family === 'IPv4' && !a.internal)?.address;

const servers: Array<{ close: () => Promise<void> }> = [];
afterEach(async () => {
  delete process.env.OPS_HOST;
  for (const s of servers.splice(0)) await s.close();
});

async function healthzFrom(host: string): Promise<number | string> {
  const ops = await startOpsServer({ port: 0, metrics: createMetrics('ops-test') });
  servers.push(ops);
  return fetch(`http://${host}:${ops.port}/healthz`).then(
    (r) => r.status,
    (error: Error & { cause?: { code?: string } }) => error.cause?.code ?? error.message,
  );
}

describe.skipIf(!external)('ops server address', () => {
  it('answers on loopback only by default', async () => {
    expect(await healthzFrom(external!)).toBe('ECONNREFUSED');
  });

  it('answers probes from outside with OPS_HOST=0.0.0.0 (as the image sets it)', async () => {
    process.env.OPS_HOST = '0.0.0.0';
    expect(await healthzFrom(external!)).toBe(200);
  });
});
