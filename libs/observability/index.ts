import Fastify, { type FastifyInstance } from 'fastify';
import { type Logger, pino } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { ConfigError, type SettingName, setting } from '../config/index.ts';

export type { Logger } from 'pino';
export { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Paths whose values pino replaces with "[redacted]": secrets never reach the logs. */
const REDACT = [
  'password',
  'secret',
  'secrets',
  'token',
  'authorization',
  '*.password',
  '*.secret',
  '*.secrets',
  '*.token',
  '*.authorization',
  'headers.authorization',
  'headers["x-hub-signature-256"]',
  'headers["stripe-signature"]',
  'headers["webhook-signature"]',
];

/** Structured JSON logs on stdout; `service` is on every line, add event_id / source as child bindings. */
export function createLogger(service: string, options: { level?: string } = {}): Logger {
  return pino({
    level: options.level ?? setting('LOG_LEVEL'),
    base: { service },
    redact: { paths: REDACT, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A metrics registry per service, with the process metrics (RSS, event loop lag, GC). */
export function createMetrics(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, prefix: 'conveyor_' });
  return registry;
}

export interface OpsServerOptions {
  metrics: Registry;
  /** Liveness: the process is working. */
  healthy?: () => Promise<boolean> | boolean;
  /** Readiness: its dependencies answer. Defaults to `healthy`. */
  ready?: () => Promise<boolean> | boolean;
}

/** Adds GET /metrics, /healthz and /readyz to a Fastify app (a service's own, or a bare one). */
export function registerOpsRoutes(app: FastifyInstance, options: OpsServerOptions): void {
  const healthy = options.healthy ?? (() => true);
  const ready = options.ready ?? healthy;
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', options.metrics.contentType);
    return options.metrics.metrics();
  });
  app.get('/healthz', async (_request, reply) => {
    const ok = await healthy();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ok' : 'unhealthy' });
  });
  app.get('/readyz', async (_request, reply) => {
    const ok = await ready();
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'not ready' });
  });
}

/**
 * A small HTTP server with only the ops routes, for services that serve nothing else (relay, sink).
 * `setting` names the variable the port came from: a port taken by another process fails naming it.
 */
export async function startOpsServer(
  options: OpsServerOptions & { port: number; host?: string; setting?: SettingName },
): Promise<{ close: () => Promise<void>; port: number }> {
  const app = Fastify({ logger: false });
  registerOpsRoutes(app, options);
  const host = options.host ?? setting('OPS_HOST');
  try {
    await app.listen({ port: options.port, host });
  } catch (error) {
    await app.close().catch(() => undefined);
    const code = (error as NodeJS.ErrnoException).code;
    if (options.setting && code === 'EADDRINUSE') {
      throw new ConfigError(
        options.setting,
        `port ${options.port} on ${host} is already in use by another process; choose a free one (0 picks any)`,
      );
    }
    if (options.setting && code === 'EACCES') {
      throw new ConfigError(options.setting, `not allowed to listen on port ${options.port} on ${host}`);
    }
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  return { close: () => app.close(), port };
}

/** Resolves on the first SIGTERM or SIGINT, after logging what the service will do before it exits. */
export function shutdownSignal(logger: Logger, whatHappensNext: string): Promise<string> {
  return new Promise((resolve) => {
    const shutdown = (signal: string) => {
      logger.info({ signal }, `shutting down: ${whatHappensNext}`);
      resolve(signal);
    };
    process.once('SIGTERM', () => shutdown('SIGTERM'));
    process.once('SIGINT', () => shutdown('SIGINT'));
  });
}
