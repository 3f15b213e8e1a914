import { type Admin, type ITopicConfig, Kafka, type KafkaConfig, type logCreator, logLevel } from 'kafkajs';
import type { Logger } from 'pino';
import { kafkaBrokers } from '../config/index.ts';

export type { Admin, Consumer, EachBatchPayload, KafkaMessage, Producer, Transaction } from 'kafkajs';

// kafkajs warns about its v2 partitioner change on every producer; Conveyor sets keys explicitly.
process.env.KAFKAJS_NO_PARTITIONER_WARNING ??= '1';

/**
 * kafkajs logs errors it retries itself (a coordinator still loading, a transaction still being
 * aborted after a crash, a group rebalancing while a member joins) at ERROR; they are routine, so
 * they go to debug.
 */
const RETRIED_BY_KAFKAJS =
  /coordinator is loading|not the correct coordinator|coordinator is not available|concurrent operation on the same transaction|Restarting the consumer|group is rebalancing/;

/** kafkajs log lines as structured pino lines of the service. */
export function pinoLogCreator(logger: Logger): logCreator {
  return () =>
    ({ level, log }) => {
      const { message, ...extra } = log;
      const routine = RETRIED_BY_KAFKAJS.test(`${message} ${String(extra.error ?? '')}`);
      const bindings = { component: 'kafkajs', ...extra };
      if (routine || level === logLevel.DEBUG) logger.debug(bindings, message);
      else if (level === logLevel.ERROR) logger.error(bindings, message);
      else if (level === logLevel.WARN) logger.warn(bindings, message);
      else logger.info(bindings, message);
    };
}

export function createKafka(
  options: { clientId: string; brokers?: string[]; logger?: Logger } & Partial<KafkaConfig>,
): Kafka {
  const { clientId, brokers, logger, ...rest } = options;
  return new Kafka({
    clientId,
    brokers: brokers ?? kafkaBrokers(),
    logLevel: logLevel.WARN,
    ...(logger ? { logCreator: pinoLogCreator(logger) } : {}),
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

/**
 * Records of `topics` (those that exist) past the consumer group's committed offsets; 0 means the group
 * has committed everything on them. A coordinator that is loading or moving answers a retriable error:
 * then this returns Infinity, and the caller asks again.
 */
export async function groupLag(admin: Admin, groupId: string, topics: string[]): Promise<number> {
  let behind = 0;
  try {
    const existing = new Set(await admin.listTopics());
    for (const topic of topics.filter((t) => existing.has(t))) {
      const ends = await admin.fetchTopicOffsets(topic);
      const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
      for (const end of ends) {
        const at = committed?.partitions.find((p) => p.partition === end.partition)?.offset ?? '-1';
        const done = BigInt(at === '-1' ? end.low : at);
        if (done < BigInt(end.high)) behind += Number(BigInt(end.high) - done);
      }
    }
  } catch (error) {
    if ((error as { retriable?: boolean }).retriable) return Number.POSITIVE_INFINITY;
    throw error;
  }
  return behind;
}

/** Headers the relay puts on every record (values are UTF-8 strings). */
export const HEADER = {
  eventId: 'conveyor.event_id',
  source: 'conveyor.source',
  eventType: 'conveyor.event_type',
  outboxId: 'conveyor.outbox_id',
} as const;

/** One DLQ topic for every stage; a record's headers say why it is there and where it came from. */
export const DLQ_TOPIC = 'conveyor.dlq';

export const DLQ_HEADER = {
  reason: 'conveyor.dlq.reason',
  errorClass: 'conveyor.dlq.error_class',
  message: 'conveyor.dlq.message',
  stage: 'conveyor.dlq.stage',
  originalTopic: 'conveyor.dlq.original_topic',
  originalPartition: 'conveyor.dlq.original_partition',
  originalOffset: 'conveyor.dlq.original_offset',
  failedAt: 'conveyor.dlq.failed_at',
} as const;

/** Topics the relay publishes events to start with this prefix (see libs/outbox topicFor). */
export const EVENT_TOPIC_PATTERN = /^conveyor\.(?!dlq$)[A-Za-z0-9._-]+$/;
