import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SETTINGS } from '../../libs/config/index.ts';

const root = path.resolve(import.meta.dirname, '../..');
interface ComposeService {
  image: string;
  build?: string;
  command?: string[];
  ports?: string[];
  environment?: Record<string, string | number>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}
// `merge: true` resolves the `<<:` keys that share the services' common part.
const compose = parse(fs.readFileSync(path.join(root, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
};
const PROVIDER_SECRETS = ['GITHUB_WEBHOOK_SECRET', 'STRIPE_WEBHOOK_SECRET', 'STANDARD_WEBHOOK_SECRET'];

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

  it.each([
    ['webhook', 'WEBHOOK_PORT'],
    ['relay', 'RELAY_PORT'],
    ['sink', 'SINK_PORT'],
  ] as const)('runs %s from the repository image on its default port, with a health check', (name, portSetting) => {
    const service = compose.services[name]!;
    expect(service.build).toBe('.');
    expect(service.command).toEqual([name]);
    const port = SETTINGS[portSetting].default;
    expect(String(service.environment?.[portSetting])).toBe(port);
    expect(service.ports).toContain(`127.0.0.1:${port}:${port}`);
    expect(service.healthcheck?.test.join(' ')).toContain(`127.0.0.1:${port}/readyz`);
    for (const part of ['postgres', 'kafka', 'schema-registry']) {
      expect(service.depends_on?.[part]?.condition).toBe('service_healthy');
    }
    expect(service.depends_on?.migrate?.condition).toBe('service_completed_successfully');
  });

  it('configures the services only with settings Conveyor knows', () => {
    for (const name of ['migrate', 'webhook', 'relay', 'sink']) {
      for (const variable of Object.keys(compose.services[name]!.environment ?? {})) {
        const known = variable in SETTINGS || PROVIDER_SECRETS.includes(variable);
        expect(known, `${name}: ${variable}`).toBe(true);
      }
    }
  });

  it('has a Dockerfile whose entrypoint is the conveyor launcher, as npx runs it', () => {
    const dockerfile = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/ENTRYPOINT \["services\/cli\/bin\/conveyor"\]/);
  });
});
