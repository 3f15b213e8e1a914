import { InvalidArgumentError } from 'commander';

/**
 * A commander option parser for a whole number of at least `min`, written in decimal digits ("abc",
 * "-3", "1.5", "0x10" and "" are refused; commander's message names the option).
 */
export function wholeNumberOption(min: number): (value: string) => number {
  return (value: string): number => {
    const trimmed = value.trim();
    const n = Number(trimmed);
    if (!/^\d+$/.test(trimmed) || !Number.isSafeInteger(n) || n < min) {
      throw new InvalidArgumentError(`expected a whole number >= ${min}.`);
    }
    return n;
  };
}
