import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { setting } from '../libs/config/index.ts';
import { migrate } from '../libs/db/index.ts';

const HINT = 'start the local stack first: npx conveyor stack up';

/**
 * Integration tests run against the real stack. This checks it answers, then gives the run a fresh
 * database (conveyor_test, dropped and re-created) with every migration applied.
 */
export default async function setup(): Promise<void> {
  const base = new URL(setting('DATABASE_URL'));
  const testUrl = new URL(base);
  testUrl.pathname = `/${process.env.CONVEYOR_TEST_DATABASE ?? 'conveyor_test'}`;
  const admin = new URL(base);
  admin.pathname = '/postgres';

  const client = new pg.Client({ connectionString: admin.toString(), connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
  } catch (error) {
    throw new Error(`Postgres at ${base.host} does not answer (${(error as Error).message}); ${HINT}`);
  }
  const name = testUrl.pathname.slice(1);
  await client.query(`DROP DATABASE IF EXISTS ${pg.escapeIdentifier(name)} WITH (FORCE)`);
  await client.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
  await client.end();
  await migrate({ url: testUrl.toString() });
  process.env.DATABASE_URL = testUrl.toString();

  const kafka = new Kafka({
    brokers: setting('KAFKA_BROKERS').split(','),
    clientId: 'test-setup',
    logLevel: logLevel.NOTHING,
    retry: { retries: 2 },
  });
  const kafkaAdmin = kafka.admin();
  try {
    await kafkaAdmin.connect();
    await kafkaAdmin.describeCluster();
  } catch (error) {
    throw new Error(`Kafka at ${setting('KAFKA_BROKERS')} does not answer (${(error as Error).message}); ${HINT}`);
  } finally {
    await kafkaAdmin.disconnect();
  }

  const registry = setting('SCHEMA_REGISTRY_URL');
  const answer = await fetch(`${registry}/subjects`).catch((error: Error) => error);
  if (answer instanceof Error || !answer.ok) {
    throw new Error(`the schema registry at ${registry} does not answer /subjects; ${HINT}`);
  }
}
