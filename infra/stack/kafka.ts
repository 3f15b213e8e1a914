import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { projectPath } from '../../libs/config/index.ts';
import { runOrThrow } from './processes.ts';
import type { StackPart } from './types.ts';

const INFRA = projectPath('infra', 'kafka');
const LIB = path.join(INFRA, 'target/lib');

/**
 * Kafka's cluster ids are 16 random bytes in URL-safe base64 without padding. One that starts with
 * "-" would be read as an option by kafka-storage (1 start in 64 failed so); Kafka's own generator
 * draws again in that case, and so does this.
 */
export function newClusterId(): string {
  for (;;) {
    const id = randomBytes(16).toString('base64url');
    if (!id.startsWith('-')) return id;
  }
}

function installed(): boolean {
  return fs.existsSync(LIB) && fs.readdirSync(LIB).some((f) => f.startsWith('kafka_2.13-'));
}

export function kafkaPart(home: string, port: number): StackPart {
  const controllerPort = port + 1;
  const dir = path.join(home, 'kafka');
  const dataDir = path.join(dir, 'data');
  const propsFile = path.join(dir, 'server.properties');
  const classpath = `${LIB}/*`;
  return {
    name: 'kafka',
    ports: [port, controllerPort],
    address: `127.0.0.1:${port}`,
    env: { KAFKA_BROKERS: `127.0.0.1:${port}` },
    needs: ['java', 'maven'],
    startTimeoutMs: 90_000,
    processMarker: propsFile,

    async install(progress) {
      if (installed()) return;
      progress('resolving Apache Kafka from Maven Central (first start only)');
      runOrThrow('mvn', ['-q', '-B', '-f', path.join(INFRA, 'pom.xml'), 'dependency:copy-dependencies'], 'mvn');
    },

    async prepare(progress) {
      fs.mkdirSync(dataDir, { recursive: true });
      const props = fs
        .readFileSync(path.join(INFRA, 'server.properties.template'), 'utf8')
        .replaceAll('${KAFKA_PORT}', String(port))
        .replaceAll('${CONTROLLER_PORT}', String(controllerPort))
        .replaceAll('${DATA_DIR}', dataDir);
      fs.writeFileSync(propsFile, props);
      if (fs.existsSync(path.join(dataDir, 'meta.properties'))) return;
      progress('formatting storage (first start only)');
      runOrThrow(
        'java',
        ['-cp', classpath, 'kafka.tools.StorageTool', 'format', '-t', newClusterId(), '-c', propsFile],
        'kafka storage format',
      );
    },

    command() {
      return {
        command: 'java',
        args: [
          '-Xms256m',
          '-Xmx512m',
          '-XX:+UseG1GC',
          '-XX:MaxGCPauseMillis=20',
          '-Djava.awt.headless=true',
          `-Dlog4j2.configurationFile=${path.join(INFRA, 'log4j2.properties')}`,
          '-cp',
          classpath,
          'kafka.Kafka',
          propsFile,
        ],
      };
    },

    async healthy() {
      const kafka = new Kafka({
        brokers: [`127.0.0.1:${port}`],
        clientId: 'conveyor-stack-health',
        connectionTimeout: 1000,
        retry: { retries: 0 },
        logLevel: logLevel.NOTHING,
      });
      const admin = kafka.admin();
      try {
        await admin.connect();
        const cluster = await admin.describeCluster();
        return cluster.brokers.length > 0;
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },

    dataDirs: [dir],
  };
}
