import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.ts';

describe('dlq inspect --samples', () => {
  it.each(['abc', '-1', '1.5', '0x10', ''])('"%s" is refused, naming the option', async (value) => {
    const result = await runCli(['dlq', 'inspect', '--samples', value], {}, 30_000);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(`option '--samples <n>' argument '${value}' is invalid`);
    expect(result.stderr).toContain('expected a whole number >= 0');
  });
});
