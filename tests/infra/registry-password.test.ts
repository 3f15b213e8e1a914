import { describe, expect, it } from 'vitest';
import { PASSWORD_VARIABLE, registryPart } from '../../infra/stack/registry.ts';

// The registry's command line is readable by every user (ps); its environment only by its own.
describe('the local registry part', () => {
  it('passes the Postgres password in its environment, not on its command line', () => {
    const part = registryPart('/tmp/conveyor-home', 18081, 'postgres://app:S3CRET%40pw@127.0.0.1:5432/conveyor');
    const { args, env } = part.command();
    expect(args.join(' ')).not.toContain('S3CRET');
    expect(args).toContain('-Dapicurio.datasource.username=app');
    expect(PASSWORD_VARIABLE).toBe('APICURIO_DATASOURCE_PASSWORD');
    expect(env?.[PASSWORD_VARIABLE]).toBe('S3CRET@pw');
    expect(env?.PATH).toBe(process.env.PATH);
  });

  it('sets no password when the URL has none', () => {
    const { args, env } = registryPart('/tmp/conveyor-home', 18081, 'postgres://postgres@127.0.0.1:5432/x').command();
    expect(args.some((a) => a.includes('datasource.password'))).toBe(false);
    expect(env?.[PASSWORD_VARIABLE]).toBeUndefined();
  });
});
