import { SchemaType } from '@kafkajs/confluent-schema-registry';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Admin, type Consumer, ensureTopics, type KafkaMessage } from '../../libs/kafka/index.ts';
import { testKafka, testRegistry, uniqueName } from '../helpers/real-stack.ts';

const schema = {
  type: 'record',
  name: 'Probe',
  namespace: 'dev.conveyor.test',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'n', type: 'int' },
  ],
};

async function consumeAll(consumer: Consumer, topic: string, expected: number, timeoutMs = 20_000) {
  const seen: KafkaMessage[] = [];
  await consumer.subscribe({ topic, fromBeginning: true });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`saw ${seen.length} of ${expected} messages`)), timeoutMs);
    void consumer.run({
      eachMessage: async ({ message }) => {
        seen.push(message);
        if (seen.length >= expected) {
          clearTimeout(timer);
          resolve();
        }
      },
    });
  });
  return seen;
}

describe('kafkajs against the pinned Apache Kafka broker', () => {
  const kafka = testKafka();
  let admin: Admin;
  const topic = uniqueName('infra-avro');

  beforeAll(async () => {
    admin = kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [{ topic, numPartitions: 1 }]);
  });
  afterAll(async () => {
    await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
  });

  it('produces Avro in Confluent wire format inside a transaction; read_committed sees only committed records', async () => {
    const registry = testRegistry();
    const { id } = await registry.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(schema) },
      {
        subject: `${topic}-value`,
      },
    );

    const producer = kafka.producer({ transactionalId: uniqueName('tx'), idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    const committed = await producer.transaction();
    await committed.send({
      topic,
      messages: [{ key: 'a', value: await registry.encode(id, { id: 'a', n: 1 }) }],
    });
    await committed.commit();
    const aborted = await producer.transaction();
    await aborted.send({
      topic,
      messages: [{ key: 'b', value: await registry.encode(id, { id: 'b', n: 2 }) }],
    });
    await aborted.abort();
    const last = await producer.transaction();
    await last.send({
      topic,
      messages: [{ key: 'c', value: await registry.encode(id, { id: 'c', n: 3 }) }],
    });
    await last.commit();
    await producer.disconnect();

    const groupId = uniqueName('group');
    const consumer = kafka.consumer({ groupId, readUncommitted: false });
    await consumer.connect();
    const seen = await consumeAll(consumer, topic, 2);
    // Give a stray aborted record time to show up, if the isolation level were broken.
    await new Promise((r) => setTimeout(r, 1500));
    await consumer.disconnect();

    const wire = seen[0]!.value!;
    expect(wire.readUInt8(0)).toBe(0); // magic byte
    expect(wire.readUInt32BE(1)).toBe(id); // schema id, big-endian
    const decoded = await Promise.all(seen.map((m) => registry.decode(m.value!)));
    expect(decoded).toEqual([
      { id: 'a', n: 1 },
      { id: 'c', n: 3 },
    ]);

    // The consumer group committed its offsets: past the three records and the transaction markers.
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
    expect(Number(offsets[0]!.partitions[0]!.offset)).toBeGreaterThanOrEqual(3);
  });

  it('a read_uncommitted consumer does see the aborted record (the isolation level is what hides it)', async () => {
    const consumer = kafka.consumer({ groupId: uniqueName('group'), readUncommitted: true });
    await consumer.connect();
    const seen = await consumeAll(consumer, topic, 3);
    await consumer.disconnect();
    expect(seen.map((m) => m.key?.toString())).toEqual(['a', 'b', 'c']);
  });
});
