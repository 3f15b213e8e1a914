import { Kafka, logLevel } from 'kafkajs';
import { stackLayout, stackUp } from '../infra/stack/stack.ts';
import { setting } from '../libs/config/index.ts';
import { recreateDatabase } from '../libs/db/index.ts';

async function kafkaAnswers(): Promise<boolean> {
  const kafka = new Kafka({
    brokers: setting('KAFKA_BROKERS').split(','),
    clientId: 'test-setup',
    logLevel: logLevel.NOTHING,
    retry: { retries: 1 },
  });
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect();
  }
}

async function registryAnswers(): Promise<boolean> {
  const answer = await fetch(`${setting('SCHEMA_REGISTRY_URL')}/subjects`).catch(() => undefined);
  return answer?.ok === true;
}

/**
 * Integration tests run against the real stack. When it does not answer, this starts it as
 * `npx conveyor stack up` would (it stays up afterwards: `npx conveyor stack down` stops it). Then
 * the run gets a fresh database (conveyor_test, dropped and re-created) with every migration applied.
 */
export default async function setup(): Promise<void> {
  if (!(await kafkaAnswers()) || !(await registryAnswers())) {
    process.stderr.write('the local stack does not answer; starting it (npx conveyor stack down stops it)\n');
    const exports = await stackUp(await stackLayout(), (line) => process.stderr.write(`stack: ${line}\n`));
    Object.assign(process.env, exports);
  }
  const base = setting('DATABASE_URL');
  try {
    process.env.DATABASE_URL = await recreateDatabase(base, process.env.CONVEYOR_TEST_DATABASE ?? 'conveyor_test');
  } catch (error) {
    throw new Error(`could not prepare the test database on ${new URL(base).host}: ${(error as Error).message}`);
  }
}
