import fs from 'node:fs';
import path from 'node:path';
import { projectPath } from '../../libs/config/index.ts';
import { ensureDatabase } from '../../libs/db/index.ts';
import { runOrThrow } from './processes.ts';
import type { StackPart } from './types.ts';

const INFRA = projectPath('infra', 'registry');
const APP_DIR = path.join(INFRA, 'target/apicurio');
/** The environment variable Apicurio (Quarkus) reads apicurio.datasource.password from. */
export const PASSWORD_VARIABLE = 'APICURIO_DATASOURCE_PASSWORD';
/** Apicurio Registry serves Confluent's Schema Registry API under this path. */
export const CCOMPAT_PATH = '/apis/ccompat/v7';

function runnerJar(): string | undefined {
  if (!fs.existsSync(APP_DIR)) return undefined;
  const jar = fs.readdirSync(APP_DIR).find((f) => f.endsWith('-runner.jar'));
  return jar && path.join(APP_DIR, jar);
}

/** Apicurio Registry 3.0, unpacked from its Maven Central release, storing schemas in Postgres. */
export function registryPart(home: string, port: number, databaseUrl: string): StackPart {
  const dir = path.join(home, 'registry');
  const registryDb = new URL(databaseUrl);
  registryDb.pathname = '/conveyor_registry';
  const baseUrl = `http://127.0.0.1:${port}${CCOMPAT_PATH}`;
  return {
    name: 'registry',
    ports: [port, port + 1000],
    address: `127.0.0.1:${port}`,
    env: { SCHEMA_REGISTRY_URL: baseUrl },
    needs: ['java', 'maven'],
    startTimeoutMs: 120_000,
    processMarker: APP_DIR,

    async install(progress) {
      if (runnerJar()) return;
      progress('fetching Apicurio Registry from Maven Central (first start only)');
      runOrThrow('mvn', ['-q', '-B', '-f', path.join(INFRA, 'pom.xml'), 'package'], 'mvn package (registry)');
    },

    async prepare() {
      fs.mkdirSync(dir, { recursive: true });
      // Apicurio exits at once when its database is missing; it creates its own tables.
      await ensureDatabase(registryDb.toString());
    },

    command() {
      const jar = runnerJar();
      if (!jar) throw new Error(`no Apicurio runner jar in ${APP_DIR}`);
      return {
        command: 'java',
        args: [
          '-Xms64m',
          '-Xmx384m',
          '-XX:+UseSerialGC',
          '-XX:TieredStopAtLevel=1',
          `-Dquarkus.config.locations=${path.join(INFRA, 'application.properties')}`,
          `-Dquarkus.http.port=${port}`,
          `-Dquarkus.management.port=${port + 1000}`,
          `-Dapicurio.datasource.url=jdbc:postgresql://${registryDb.hostname}:${registryDb.port || 5432}/conveyor_registry`,
          `-Dapicurio.datasource.username=${decodeURIComponent(registryDb.username || 'postgres')}`,
          '-jar',
          jar,
        ],
        // The password goes in the environment, which only its user can read (/proc/<pid>/environ),
        // not on the command line, which anyone can (ps). Quarkus maps APICURIO_DATASOURCE_PASSWORD
        // to apicurio.datasource.password, above application.properties.
        env: registryDb.password
          ? { ...process.env, [PASSWORD_VARIABLE]: decodeURIComponent(registryDb.password) }
          : undefined,
      };
    },

    async healthy() {
      const answer = await fetch(`${baseUrl}/subjects`, { signal: AbortSignal.timeout(2000) });
      return answer.ok;
    },

    async afterStart() {
      // Apicurio's global default is NONE; Confluent's, which users expect, is BACKWARD.
      const current = await fetch(`${baseUrl}/config`).then(
        (r) => r.json() as Promise<{ compatibilityLevel?: string }>,
      );
      if (current.compatibilityLevel === 'NONE') {
        await fetch(`${baseUrl}/config`, {
          method: 'PUT',
          headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
          body: JSON.stringify({ compatibility: 'BACKWARD' }),
        });
      }
    },

    dataDirs: [dir],
  };
}
