import { runner } from 'node-pg-migrate';
import pg from 'pg';
import { projectPath, redactUrl, setting } from '../config/index.ts';

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Anything that can run a query: a pool, or a client inside a caller's transaction. */
export type Queryable = Pick<pg.ClientBase, 'query'>;

const MIGRATIONS_DIR = projectPath('libs', 'db', 'migrations');

export function databaseUrl(env: NodeJS.ProcessEnv = process.env): string {
  return setting('DATABASE_URL', env);
}

export function createPool(options: { url?: string; max?: number; applicationName?: string } = {}): Pool {
  return new pg.Pool({
    connectionString: options.url ?? databaseUrl(),
    max: options.max ?? 10,
    application_name: options.applicationName ?? 'conveyor',
  });
}

const NEEDS_ESCAPE = /["\\]/;

/**
 * A Postgres array literal of text values, every element quoted (so commas, braces, spaces and the
 * word NULL are plain text), for a `$n::text[]` (or `::bigint[]`) parameter. node-postgres builds the
 * same literal by concatenation with two regex replaces per element: for the sink's batches of
 * thousands of ids that was 650 bytes of garbage per id.
 */
export function arrayLiteral(values: readonly string[]): string {
  if (values.length === 0) return '{}';
  const escaped = values.some((v) => NEEDS_ESCAPE.test(v))
    ? values.map((v) => v.replaceAll('\\', '\\\\').replaceAll('"', '\\"'))
    : values;
  return `{"${escaped.join('","')}"}`;
}

/** Runs `work` in one transaction on a pooled client; rolls back on any error. */
export async function withTransaction<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** Creates the database named in `url` when it does not exist yet (connecting to `postgres`). */
export async function ensureDatabase(url: string = databaseUrl()): Promise<'created' | 'exists'> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.replace(/^\//, ''));
  if (!name) throw new Error(`DATABASE_URL names no database: ${redactUrl(url)}`);
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString() });
  await client.connect();
  try {
    const found = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (found.rowCount) return 'exists';
    await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    return 'created';
  } catch (error) {
    // Two processes may race to create it; the loser sees duplicate_database (42P04).
    if ((error as { code?: string }).code === '42P04') return 'exists';
    throw error;
  } finally {
    await client.end();
  }
}

/**
 * Drops the database named `name` on the server of `url` (disconnecting its sessions), creates it
 * again and migrates it; returns its URL. For tests and benchmarks that need a clean slate.
 */
export async function recreateDatabase(url: string, name: string): Promise<string> {
  const target = new URL(url);
  target.pathname = `/${name}`;
  const admin = new URL(url);
  admin.pathname = '/postgres';
  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 3000 });
  await client.connect();
  try {
    await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  } finally {
    await client.end();
  }
  await migrate({ url: target.toString() });
  return target.toString();
}

/** Applies pending migrations; returns the names of those applied (empty when up to date). */
export async function migrate(options: { url?: string; log?: (line: string) => void } = {}): Promise<string[]> {
  const url = options.url ?? databaseUrl();
  await ensureDatabase(url);
  const applied = await runner({
    databaseUrl: url,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'conveyor_migrations',
    count: Number.POSITIVE_INFINITY,
    singleTransaction: true,
    log: options.log ?? (() => undefined),
    verbose: false,
  });
  return applied.map((m) => m.name);
}
