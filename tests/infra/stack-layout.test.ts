import { describe, expect, it } from 'vitest';
import { stackLayout } from '../../infra/stack/stack.ts';
import { setting } from '../../libs/config/index.ts';

describe('stack layout', () => {
  it('uses the Postgres server that answers even when the target database does not exist yet', async () => {
    const url = new URL(setting('DATABASE_URL'));
    url.pathname = `/conveyor_not_created_${process.pid}`;
    const layout = await stackLayout({ ...process.env, DATABASE_URL: url.toString() });
    expect(layout.parts.map((p) => p.name)).not.toContain('postgres');
  });

  it('plans an embedded Postgres when no server answers at DATABASE_URL', async () => {
    const layout = await stackLayout({
      ...process.env,
      CONVEYOR_HOME: `/tmp/conveyor-layout-${process.pid}`,
      DATABASE_URL: 'postgres://postgres@127.0.0.1:1/conveyor',
    });
    expect(layout.parts.map((p) => p.name)).toContain('postgres');
  });
});
