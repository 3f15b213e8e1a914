import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryError, SchemaRegistryClient } from '../../libs/registry/index.ts';

// A registry stand-in behind HTTP Basic authentication (user "reg", password "SECRET:PW@1"): it
// answers /config only with the right Authorization header, 401 without it, and 500 on /boom.
const PASSWORD = 'SECRET:PW@1';
const seen: (string | undefined)[] = [];
const server = http.createServer((req, res) => {
  seen.push(req.headers.authorization);
  const expected = `Basic ${Buffer.from(`reg:${PASSWORD}`).toString('base64')}`;
  if (req.headers.authorization !== expected) {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error_code: 40101, message: 'Unauthorized' }));
  } else if (req.url?.startsWith('/api/config')) {
    res.writeHead(200, { 'content-type': 'application/vnd.schemaregistry.v1+json' });
    res.end(JSON.stringify({ compatibilityLevel: 'FULL' }));
  } else {
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end('internal error');
  }
});

function withCredentials(base: string): string {
  const url = new URL(base);
  url.username = 'reg';
  url.password = encodeURIComponent(PASSWORD);
  return url.toString();
}

async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a failure');
}

describe('SchemaRegistryClient with credentials in its URL', () => {
  let base: string;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends them as HTTP Basic authentication, not in the URL', async () => {
    const client = new SchemaRegistryClient(withCredentials(base));
    expect(await client.compatibilityLevel('s-value')).toBe('FULL');
    expect(seen.at(-1)).toBe(`Basic ${Buffer.from(`reg:${PASSWORD}`).toString('base64')}`);
    expect(client.url).toBe(base);
  });

  it('shows no password in the errors it throws', async () => {
    const client = new SchemaRegistryClient(withCredentials(base));
    const serverError = await failure(client.register('boom', { type: 'string' }));
    expect(serverError).toBeInstanceOf(RegistryError);
    expect((serverError as RegistryError).status).toBe(500);

    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const refused = await failure(
      new SchemaRegistryClient(withCredentials(`http://127.0.0.1:${port}/api`)).compatibilityLevel('s'),
    );
    expect(refused).toBeInstanceOf(RegistryError);
    expect(refused.message).toContain('ECONNREFUSED');

    for (const error of [serverError, refused]) {
      const text = `${error.message}\n${error.stack}\n${JSON.stringify(error)}`;
      expect(text).not.toContain('SECRET');
      expect(text).not.toContain(encodeURIComponent(PASSWORD));
    }
  });

  it('without credentials sends no Authorization header', async () => {
    const client = new SchemaRegistryClient(base);
    const error = await failure(client.compatibilityLevel('s-value'));
    expect((error as RegistryError).status).toBe(401);
    expect(seen.at(-1)).toBeUndefined();
  });
});
