import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { type DefinitionError, parseDefinition } from '../../services/puller/definition.ts';

const readme = fs.readFileSync(path.resolve(import.meta.dirname, '../../services/puller/README.md'), 'utf8');
const section = readme.slice(readme.indexOf('### Definition format'));
const example = /```yaml\n([\s\S]*?)```/.exec(section)?.[1] ?? '';

/** The fields the parser accepts at `where`, read from its own "unknown field" error. */
function acceptedFields(base: Record<string, unknown>, where: string[]): string[] {
  const raw = structuredClone(base);
  let at: Record<string, unknown> = raw;
  for (const key of where) at = at[key] as Record<string, unknown>;
  at.no_such_field = 1;
  try {
    parseDefinition(raw, 'probe.yaml');
  } catch (error) {
    const listed = /expected one of: ([^)]+)\)/.exec((error as DefinitionError).message)?.[1];
    if (listed) return listed.split(', ');
  }
  throw new Error(`the parser did not list the fields of ${where.join('.') || '(root)'}`);
}

describe('the definition format in services/puller/README.md', () => {
  it('is a definition the parser accepts', () => {
    expect(example).not.toBe('');
    expect(() => parseDefinition(parse(example), 'README.md')).not.toThrow();
  });

  it('names every field the parser accepts, so the two cannot drift apart', () => {
    const base = parse(example) as Record<string, unknown>;
    const variants: Array<[Record<string, unknown>, string[]]> = [
      [base, []],
      [base, ['request']],
      [base, ['records']],
      [base, ['auth']],
      [base, ['pagination']],
      [base, ['incremental']],
      [base, ['rate_limit']],
      [base, ['retry']],
      [base, ['schedule']],
    ];
    const alternatives = {
      auth: [{ type: 'api_key' }, { type: 'oauth2_client_credentials' }],
      pagination: [{ type: 'offset' }, { type: 'page' }, { type: 'keyset' }],
      incremental: [{ type: 'watermark' }, { type: 'newest_first' }],
    };
    for (const [part, options] of Object.entries(alternatives)) {
      for (const option of options) variants.push([{ ...base, [part]: option }, [part]]);
    }
    const missing = new Set<string>();
    for (const [raw, where] of variants) {
      for (const field of acceptedFields(raw, where)) {
        if (!new RegExp(`\\b${field}\\b`).test(example)) missing.add([...where, field].join('.'));
      }
    }
    expect([...missing]).toEqual([]);
  });
});
