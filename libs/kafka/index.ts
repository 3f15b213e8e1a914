import { type Admin, type ITopicConfig, Kafka, type KafkaConfig, logLevel } from 'kafkajs';
import { kafkaBrokers } from '../config/index.ts';

export type { Admin, Consumer, EachBatchPayload, KafkaMessage, Producer, Transaction } from 'kafkajs';

// kafkajs warns about its v2 partitioner change on every producer; Conveyor sets keys explicitly.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

export function createKafka(options: { clientId: string; brokers?: string[] } & Partial<KafkaConfig>): Kafka {
  const { clientId, brokers, ...rest } = options;
  return new Kafka({
    clientId,
    brokers: brokers ?? kafkaBrokers(),
    logLevel: logLevel.WARN,
    ...rest,
  });
}

/** Creates the topics that do not exist yet; existing ones are left as they are. */
export async function ensureTopics(admin: Admin, topics: ITopicConfig[]): Promise<void> {
  const existing = new Set(await admin.listTopics());
  const missing = topics.filter((t) => !existing.has(t.topic));
  if (missing.length === 0) return;
  try {
    await admin.createTopics({ topics: missing, waitForLeaders: true });
  } catch (error) {
    // Another process created it between listTopics and createTopics.
    if ((error as { type?: string }).type !== 'TOPIC_ALREADY_EXISTS') throw error;
  }
}
