import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { settingsTableRows } from '../../libs/config/index.ts';

const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../README.md'), 'utf8');

describe('README', () => {
  it('documents every setting the code reads, with its default (run `npm run docs:settings` to fix)', () => {
    const block = readme.slice(readme.indexOf('<!-- settings:start -->'), readme.indexOf('<!-- settings:end -->'));
    const documented = block.split('\n').filter((line) => line.startsWith('|'));
    expect(documented).toEqual(settingsTableRows());
  });

  it('names the test command that CI runs', () => {
    expect(readme).toContain('npm test');
    expect(fs.readFileSync(path.resolve(import.meta.dirname, '../../.ci/run'), 'utf8')).toContain('npm test -- ');
  });
});
