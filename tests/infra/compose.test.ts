import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SETTINGS } from '../../libs/config/index.ts';

const root = path.resolve(import.meta.dirname, '../..');
const compose = parse(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8')) as {
  services: Record<string, { image: string; ports?: string[] }>;
};

describe('docker-compose.yml matches the no-Docker stack', () => {
  it('runs the Kafka version pinned in infra/kafka/pom.xml', () => {
    const pinned = /<kafka\.version>([^<]+)</.exec(
      fs.readFileSync(path.join(root, 'infra/kafka/pom.xml'), 'utf8'),
    )?.[1];
    expect(compose.services.kafka!.image).toBe(`apache/kafka:${pinned}`);
  });

  it('publishes the same ports as the defaults', () => {
    expect(compose.services.kafka!.ports).toContain(`127.0.0.1:${SETTINGS.KAFKA_PORT.default}:9092`);
    expect(compose.services['schema-registry']!.ports).toContain(
      `127.0.0.1:${SETTINGS.SCHEMA_REGISTRY_PORT.default}:8081`,
    );
    expect(compose.services.postgres!.ports).toContain('127.0.0.1:5432:5432');
  });
});
