import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

// A wrong setting fails at once, naming the variable and what it should be, not in the library it reaches.
describe('a malformed setting', () => {
  it.each([
    [['relay'], { LOG_LEVEL: 'verbose' }, /^conveyor: LOG_LEVEL: expected one of trace, /m],
    [
      ['dlq', 'inspect'],
      { KAFKA_BROKERS: '127.0.0.1:abc' },
      /^conveyor: KAFKA_BROKERS: expected comma-separated host:port/m,
    ],
    [['migrate'], { DATABASE_URL: 'not a url' }, /^conveyor: DATABASE_URL: expected a URL like postgres:\/\//m],
    [['schema', 'check'], { SCHEMA_REGISTRY_URL: 'not a url' }, /^conveyor: SCHEMA_REGISTRY_URL: expected an http/m],
  ])('%s with %o', async (args, env, expected) => {
    const started = Date.now();
    const result = await runCli(args as string[], env as Record<string, string>, 30_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(expected);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});
