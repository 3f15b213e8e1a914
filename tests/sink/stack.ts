import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SchemaType } from '@kafkajs/confluent-schema-registry';
import type { Kafka } from 'kafkajs';
import { type Pool, withTransaction } from '../../libs/db/index.ts';
import { ensureTopics, groupLag, HEADER } from '../../libs/kafka/index.ts';
import { SilverWriter } from '../../libs/lake/silver.ts';
import { LocalDirStorage } from '../../libs/lake/storage.ts';
import { createLogger, createMetrics, type Registry } from '../../libs/observability/index.ts';
import { appendEvents, type NewEvent, topicFor } from '../../libs/outbox/index.ts';
import { DEFAULT_SCHEMAS_DIR } from '../../libs/registry/contracts.ts';
import { SchemaRegistryClient } from '../../libs/registry/index.ts';
import { Sink, type SinkOptions } from '../../services/sink/sink.ts';
import { registryUrl, testRegistry, uniqueName } from '../helpers/real-stack.ts';

/**
 * Stands in for the relay: stores events in raw_events (so `verify` knows them) and publishes them the
 * way the relay does (key = entity key, Confluent wire-format Avro envelope, event headers), encoded by
 * @kafkajs/confluent-schema-registry, an encoder independent of the sink's decoder.
 */
export class TestSource {
  readonly source: string;
  readonly topic: string;
  private schemaId = 0;
  private readonly registry = testRegistry();

  constructor(
    private readonly kafka: Kafka,
    private readonly pool: Pool,
    prefix = 'sinktest',
  ) {
    this.source = uniqueName(prefix);
    this.topic = topicFor(this.source);
  }

  async setup(partitions = 3): Promise<this> {
    const admin = this.kafka.admin();
    await admin.connect();
    await ensureTopics(admin, [{ topic: this.topic, numPartitions: partitions }]);
    await admin.disconnect();
    const schema = fs.readFileSync(path.join(DEFAULT_SCHEMAS_DIR, 'envelope.avsc'), 'utf8');
    const { id } = await this.registry.register({ type: SchemaType.AVRO, schema }, { subject: `${this.topic}-value` });
    this.schemaId = id;
    return this;
  }

  events(count: number, options: { from?: number; keys?: number; type?: (i: number) => string } = {}): NewEvent[] {
    const from = options.from ?? 0;
    return Array.from({ length: count }, (_, n) => {
      const i = from + n;
      return {
        source: this.source,
        eventId: `${this.source}-${i}`,
        eventType: options.type ? options.type(i) : i % 2 ? 'order.created' : 'order.paid',
        entityKey: `order-${i % (options.keys ?? 50)}`,
        // Two event dates, so output spans several partitions.
        eventTime: new Date(Date.UTC(2026, 2, 1 + (i % 2), 10, 0, i % 60)),
        payload: { seq: i, amount: i * 3, note: `é ${i}` },
        lineage: { request: `req-${i}` },
      };
    });
  }

  /** Stores events as accepted (raw_events + outbox) and returns them with their ingested_at. */
  async accept(events: NewEvent[]): Promise<Array<NewEvent & { ingestedAt: Date }>> {
    await withTransaction(this.pool, (c) => appendEvents(c, events));
    const { rows } = await this.pool.query<{ event_id: string; ingested_at: Date }>(
      'SELECT event_id, ingested_at FROM raw_events WHERE source = $1 AND event_id = ANY($2::text[])',
      [this.source, events.map((e) => e.eventId)],
    );
    const at = new Map(rows.map((r) => [r.event_id, r.ingested_at]));
    return events.map((e) => ({ ...e, ingestedAt: at.get(e.eventId)! }));
  }

  async encode(event: NewEvent & { ingestedAt: Date }, override: Record<string, unknown> = {}): Promise<Buffer> {
    return this.registry.encode(this.schemaId, {
      event_id: event.eventId,
      source: event.source,
      event_type: event.eventType,
      entity_key: event.entityKey,
      event_time: event.eventTime.getTime(),
      ingested_at: event.ingestedAt.getTime(),
      payload: JSON.stringify(event.payload),
      lineage: event.lineage ?? {},
      ...override,
    });
  }

  /** Publishes (again, if already published: that is a re-publication with the same event id). */
  async publish(events: Array<NewEvent & { ingestedAt: Date }>): Promise<void> {
    const messages = await Promise.all(
      events.map(async (e) => ({
        key: e.entityKey,
        value: await this.encode(e),
        headers: { [HEADER.eventId]: e.eventId, [HEADER.source]: e.source, [HEADER.eventType]: e.eventType },
      })),
    );
    await this.send(messages);
  }

  async send(messages: Array<{ key: string; value: Buffer; headers?: Record<string, string> }>): Promise<void> {
    const producer = this.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    try {
      for (let i = 0; i < messages.length; i += 1000) {
        await producer.send({ topic: this.topic, acks: -1, messages: messages.slice(i, i + 1000) });
      }
    } finally {
      await producer.disconnect();
    }
  }
}

export function tempLake(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'conveyor-lake-'));
}

export interface RunningSink {
  sink: Sink;
  metrics: Registry;
  groupId: string;
  stop: () => Promise<void>;
}

/** A sink in this process, as `conveyor sink` builds it. */
export async function startSink(
  kafka: Kafka,
  pool: Pool,
  lake: string,
  topics: string[] | RegExp,
  options: Partial<SinkOptions> = {},
): Promise<RunningSink> {
  const storage = new LocalDirStorage(lake);
  const silver = await SilverWriter.create(storage);
  const metrics = createMetrics('sink-test');
  const groupId = options.groupId ?? uniqueName('sink');
  const sink = new Sink({
    kafka,
    registry: new SchemaRegistryClient(registryUrl()),
    pool,
    storage,
    silver,
    logger: createLogger('sink-test', { level: 'silent' }),
    metrics,
    groupId,
    topics,
    rotation: { maxRecords: 100_000, maxBytes: 64 << 20, maxSpanMs: 3600_000 },
    entitySources: new Set(),
    consumers: 3,
    partitionsConcurrently: 1,
    maxBytesPerPartition: 64 * 1024,
    dedupeRetentionDays: 7,
    ...options,
  });
  await sink.start();
  return {
    sink,
    metrics,
    groupId,
    stop: async () => {
      await sink.stop();
      await silver.close();
    },
  };
}

/** Waits until the group has committed every partition of the topics up to their end. */
export async function waitForCommitted(kafka: Kafka, groupId: string, topics: string[], timeoutMs = 60_000) {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const behind = await groupLag(admin, groupId, topics);
      if (behind === 0) return;
      if (Date.now() > deadline) throw new Error(`group ${groupId} is still ${behind} records behind`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await admin.disconnect();
  }
}
