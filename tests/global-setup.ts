import { Kafka, logLevel } from 'kafkajs';
import { setting } from '../libs/config/index.ts';
import { recreateDatabase } from '../libs/db/index.ts';

const HINT = 'start the local stack first: npx conveyor stack up';

/**
 * Integration tests run against the real stack. This checks it answers, then gives the run a fresh
 * database (conveyor_test, dropped and re-created) with every migration applied.
 */
export default async function setup(): Promise<void> {
  const base = setting('DATABASE_URL');
  let testUrl: string;
  try {
    testUrl = await recreateDatabase(base, process.env.CONVEYOR_TEST_DATABASE ?? 'conveyor_test');
  } catch (error) {
    throw new Error(
      `could not prepare the test database on ${new URL(base).host}: ${(error as Error).message}; ${HINT}`,
    );
  }
  process.env.DATABASE_URL = testUrl;

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
