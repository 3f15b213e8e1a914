import { randomUUID } from 'node:crypto';
import { SchemaRegistry } from '@kafkajs/confluent-schema-registry';
import { logLevel } from 'kafkajs';
import { setting } from '../../libs/config/index.ts';
import { createPool, type Pool } from '../../libs/db/index.ts';
import { createKafka } from '../../libs/kafka/index.ts';

/** A name no other test (or earlier run against the same broker) uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

export function testKafka(clientId = uniqueName('test')) {
  // kafkajs logs retriable coordinator errors at ERROR; tests assert outcomes instead.
  return createKafka({ clientId, logLevel: logLevel.NOTHING });
}

export function testRegistry(): SchemaRegistry {
  return new SchemaRegistry({ host: setting('SCHEMA_REGISTRY_URL') });
}

export function testPool(max = 5): Pool {
  return createPool({ max, applicationName: 'conveyor-test' });
}

export const registryUrl = () => setting('SCHEMA_REGISTRY_URL');
