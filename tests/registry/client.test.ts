import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryError, SchemaRegistryClient } from '../../libs/registry/index.ts';

// A registry stand-in that answers GET /schemas/ids/:id slowly, as a cold registry does, and counts
// the requests; id 404 is unknown the first time it is asked for, then known.
const schema = JSON.stringify({ type: 'record', name: 'T', fields: [{ name: 'id', type: 'string' }] });
const asked = new Map<string, number>();
const server = http.createServer((req, res) => {
  const id = /^\/schemas\/ids\/(\d+)$/.exec(req.url ?? '')?.[1];
  const times = (asked.get(id ?? '') ?? 0) + 1;
  asked.set(id ?? '', times);
  setTimeout(() => {
    if (!id || (id === '404' && times === 1)) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error_code: 40403, message: 'Schema not found' }));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
    res.end(JSON.stringify({ schema }));
  }, 50);
});

describe('SchemaRegistryClient.typeOf', () => {
  let client: SchemaRegistryClient;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = new SchemaRegistryClient(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('asks the registry once for an id, however many ask for it at once or later', async () => {
    const types = await Promise.all([client.typeOf(7), client.typeOf(7), client.typeOf(7)]);
    expect(types[0]!.name).toBe('T');
    expect(types[1]).toBe(types[0]);
    expect(await client.typeOf(7)).toBe(types[0]);
    expect(asked.get('7')).toBe(1);
  });

  it('does not remember a failure: the next ask tries again', async () => {
    const failed = await Promise.allSettled([client.typeOf(404), client.typeOf(404)]);
    expect(failed.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((failed[0] as PromiseRejectedResult).reason).toBeInstanceOf(RegistryError);
    expect((failed[0] as PromiseRejectedResult).reason.status).toBe(404);
    expect((await client.typeOf(404)).name).toBe('T');
    expect(asked.get('404')).toBe(2);
  });
});
