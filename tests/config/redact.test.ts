import { describe, expect, it } from 'vitest';
import { redactUrl } from '../../libs/config/index.ts';

describe('redactUrl', () => {
  it('masks the password in the userinfo', () => {
    expect(redactUrl('postgres://app:SECRETPW@db:5432/conveyor')).toBe('postgres://app:***@db:5432/conveyor');
  });

  it('masks password, sslpassword and sslkey in the query string, which pg reads too', () => {
    const shown = redactUrl(
      'postgres://app@db:5432/conveyor?sslmode=require&password=SECRETPW&sslpassword=KEYPW&sslkey=/keys/client.key',
    );
    expect(shown).not.toContain('SECRETPW');
    expect(shown).not.toContain('KEYPW');
    expect(shown).not.toContain('client.key');
    expect(shown).toContain('sslmode=require');
    expect(shown).toContain('password=***');
  });

  it('masks a query parameter whatever its case, and every repeat of it', () => {
    const shown = redactUrl('postgres://db/conveyor?Password=A1&password=B2&PASSWORD=C3');
    for (const secret of ['A1', 'B2', 'C3']) expect(shown).not.toContain(secret);
  });
});
