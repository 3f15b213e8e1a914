import { InvalidArgumentError } from 'commander';
import { isMemorySize, MEMORY_SIZE_FORM } from '../../../libs/config/index.ts';

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

/** A commander option parser for a DuckDB memory limit (512MB, 2GB, 1.5GiB...). */
export function memorySizeOption(value: string): string {
  if (!isMemorySize(value)) throw new InvalidArgumentError(`expected ${MEMORY_SIZE_FORM}.`);
  return value.trim();
}
