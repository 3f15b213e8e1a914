import { afterAll, describe, expect, it } from 'vitest';
import { arrayLiteral } from '../../libs/db/index.ts';
import { testPool } from '../helpers/real-stack.ts';

describe('arrayLiteral', () => {
  const pool = testPool();
  afterAll(() => pool.end());

  it('round-trips any text through Postgres, separators, quotes, backslashes and the word NULL included', async () => {
    const values = [
      'plain',
      'a,b',
      '{x}',
      'NULL',
      ' spaced ',
      'quo"te',
      'back\\slash',
      '\\"',
      'new\nline',
      'ünïcode ✓ 🚀',
      '',
    ];
    for (const list of [values, values.filter((v) => !/["\\]/.test(v)), []]) {
      const { rows } = await pool.query<{ a: string[] }>('SELECT $1::text[] AS a', [arrayLiteral(list)]);
      expect(rows[0]!.a).toEqual(list);
    }
  });

  it('serves bigint arrays from decimal strings', async () => {
    const { rows } = await pool.query<{ a: string[] }>('SELECT $1::bigint[]::text[] AS a', [
      arrayLiteral(['0', '9223372036854775807']),
    ]);
    expect(rows[0]!.a).toEqual(['0', '9223372036854775807']);
  });
});
