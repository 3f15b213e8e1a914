import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubRequest {
  url: string;
  headers: IncomingMessage['headers'];
}

/** A tiny HTTP server whose answers a test scripts; it records every request it receives. */
export interface Stub {
  url: string;
  requests: StubRequest[];
  handle: (request: StubRequest, response: ServerResponse) => unknown;
  close(): Promise<void>;
}

export async function startStub(): Promise<Stub> {
  const stub: Stub = {
    url: '',
    requests: [],
    handle: (_request, response) => response.writeHead(404).end(),
    close: async () => undefined,
  };
  const server = createServer((request, response) => {
    const seen = { url: request.url ?? '', headers: request.headers };
    stub.requests.push(seen);
    void stub.handle(seen, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  stub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return stub;
}

/** Sends a JSON body with extra headers. */
export function json(response: ServerResponse, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(200, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}
