import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

describe('PULL_LEASE_SECONDS', () => {
  it.each(['0.001', '0.5', '0', '-1', 'abc', '0x10'])('"%s" is refused before any run, naming it', async (value) => {
    const result = await runCli(
      ['pull', '--source', 'no-such-source', '--once'],
      { PULL_LEASE_SECONDS: value },
      30_000,
    );
    expect(result.code).toBe(2);
    expect(result.stderr).toContain(`PULL_LEASE_SECONDS: expected seconds >= 1, got "${value}"`);
  });

  it.each(['1', '2.5', '30'])('"%s" is accepted', async (value) => {
    const result = await runCli(
      ['pull', '--source', 'no-such-source', '--once'],
      { PULL_LEASE_SECONDS: value },
      30_000,
    );
    expect(result.stderr).toContain('unknown source "no-such-source"');
  });
});
