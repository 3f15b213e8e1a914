import fs from 'node:fs';
import path from 'node:path';
import { runOrThrow } from './processes.ts';
import type { StackPart } from './types.ts';

const INFRA = path.resolve(import.meta.dirname, '../registry');
const RUNNER = path.join(INFRA, 'target/quarkus-app/quarkus-run.jar');
/** Apicurio Registry serves Confluent's Schema Registry API under this path. */
export const CCOMPAT_PATH = '/apis/ccompat/v7';

/** Apicurio Registry 3, built from its Maven Central artifacts, storing schemas in Postgres. */
export function registryPart(home: string, port: number, databaseUrl: string): StackPart {
  const dir = path.join(home, 'registry');
  const db = new URL(databaseUrl);
  const jdbcUrl = `jdbc:postgresql://${db.hostname}:${db.port || 5432}/conveyor_registry`;
  const baseUrl = `http://127.0.0.1:${port}${CCOMPAT_PATH}`;
  return {
    name: 'registry',
    ports: [port],
    address: `127.0.0.1:${port}`,
    env: { SCHEMA_REGISTRY_URL: baseUrl },
    needs: ['java', 'maven'],
    startTimeoutMs: 120_000,
    processMarker: RUNNER,

    async install(progress) {
      if (fs.existsSync(RUNNER)) return;
      progress('building Apicurio Registry from Maven Central (first start only, a few minutes)');
      runOrThrow('mvn', ['-q', '-B', '-f', path.join(INFRA, 'pom.xml'), 'package'], 'mvn package (registry)');
    },

    async prepare() {
      fs.mkdirSync(dir, { recursive: true });
    },

    command() {
      return {
        command: 'java',
        args: [
          '-Xms128m',
          '-Xmx384m',
          `-Dquarkus.http.host=127.0.0.1`,
          `-Dquarkus.http.port=${port}`,
          `-Dapicurio.datasource.url=${jdbcUrl}`,
          `-Dapicurio.datasource.username=${decodeURIComponent(db.username || 'postgres')}`,
          `-Dapicurio.datasource.password=${decodeURIComponent(db.password)}`,
          '-jar',
          RUNNER,
        ],
      };
    },

    async healthy() {
      const answer = await fetch(`${baseUrl}/subjects`, { signal: AbortSignal.timeout(2000) });
      return answer.ok;
    },

    dataDirs: [dir],
  };
}
