import type { Consumer, EachBatchPayload, Kafka, KafkaMessage, Producer } from 'kafkajs';
import { type Pool, withTransaction } from '../../libs/db/index.ts';
import { DLQ_HEADER, DLQ_TOPIC, ensureTopics } from '../../libs/kafka/index.ts';
import { type BronzeFile, type BronzeUnit, bronzeUnits, type RotationPolicy } from '../../libs/lake/bronze.ts';
import { firstOffsetInName, type LakeEvent } from '../../libs/lake/event.ts';
import type { SilverWriter } from '../../libs/lake/silver.ts';
import type { LakeStorage } from '../../libs/lake/storage.ts';
import { Counter, Gauge, Histogram, type Logger, type Registry } from '../../libs/observability/index.ts';
import { RegistryError, type SchemaRegistryClient } from '../../libs/registry/index.ts';
import { claimEvents, expireClaims } from './dedupe.ts';
import { partitionKey, StaleOwnerError, takeEpochs, withFence } from './fence.ts';
import { checkEnvelope, decodeWith, type Reader, Rejection, readerFor, wireId } from './gate.ts';

export interface SinkOptions {
  kafka: Kafka;
  registry: SchemaRegistryClient;
  pool: Pool;
  storage: LakeStorage;
  silver: SilverWriter;
  logger: Logger;
  metrics: Registry;
  groupId: string;
  /** Topic names, or a pattern: topics matching it are consumed, including those created later. */
  topics: string[] | RegExp;
  /** With a pattern: how often to look for new matching topics (kafkajs resolves a pattern once). */
  topicRefreshMs?: number;
  rotation: RotationPolicy;
  /** Sources whose events also merge into silver/<source>_latest (one row per entity key). */
  entitySources: ReadonlySet<string>;
  /**
   * Consumer-group members in this process. kafkajs fetches for a member only once every batch of its
   * previous fetch is committed, so with one member the sink idles while it fetches and the broker
   * idles while it writes; a second member fetches while the first writes.
   */
  consumers: number;
  /** Partitions each member processes at the same time (its fetch holds this many partitions' worth). */
  partitionsConcurrently: number;
  maxBytesPerPartition: number;
  dedupeRetentionDays: number;
  /** When the first claim expiry runs after start (default a minute; later runs every ten minutes). */
  expiryFirstMs?: number;
  sessionTimeoutMs?: number;
}

const BRONZE_WRITES_IN_FLIGHT = 8;
/** Folders whose earlier files a member remembers (removeSuperseded) before it starts afresh. */
const EARLIER_FOLDERS_KEPT = 4096;
const TOPIC_REFRESH_MS = 10_000;
/** Dedupe claim expiry: first a minute after start, then every ten minutes. */
const EXPIRY_FIRST_MS = 60_000;
const EXPIRY_EVERY_MS = 600_000;

interface Rejected {
  message: KafkaMessage;
  rejection: Rejection;
}

/** One consumer-group member of this sink, with what it knows of its own assignment. */
interface Member {
  consumer: Consumer;
  /** The fencing epoch it took for each partition at its last group join (see fence.ts). */
  epochs: Promise<Map<string, string>>;
  /**
   * Per folder and topic-partition: files already there when it first wrote the folder since it was
   * given the partition, by first offset (see removeSuperseded). Forgotten on a rebalance and when a
   * batch fails, since either may leave files this list does not know.
   */
  earlierFiles: Map<string, Map<string, bigint>>;
}

/**
 * The sink: per fetched batch of one topic-partition, decode → gate (rejects to the DLQ) → dedupe →
 * bronze and silver files, durable → commit the batch's offsets. Nothing is committed before the files
 * covering it are renamed into place and fsynced, so a crash anywhere replays the batch from its first
 * offset, which rewrites the same files.
 */
export class Sink {
  private readonly members: Member[];
  private readonly producer: Producer;
  private expiryStart: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  /** A claim expiry in progress (one at a time), awaited by stop(). */
  private expiry: Promise<void> | undefined;
  private refreshTimer: NodeJS.Timeout | undefined;
  /** A look for new topics (and re-subscription) in progress, awaited by stop(). */
  private refresh: Promise<void> | undefined;
  /** Topics the consumer is subscribed to: those named, or those matching the pattern when last looked. */
  private subscribed = new Set<string>();
  private consuming = false;
  private stopping = false;
  private running = false;
  /** A re-subscription failed with the consumers stopped: nothing is consumed until one succeeds. */
  private stalled = false;
  /** How to read each writer schema, by id (immutable in the registry). */
  private readonly readers = new Map<number, Reader>();
  /**
   * Test hook: CONVEYOR_FAILPOINT names a point (sink-stop-before-fence, sink-stop-before-write) where
   * the process stops itself (SIGSTOP) the first time it gets there, as a sink stalled by the machine.
   */
  private failpoint = process.env.CONVEYOR_FAILPOINT;
  private readonly m;

  constructor(private readonly options: SinkOptions) {
    this.members = Array.from({ length: options.consumers }, () => ({
      consumer: options.kafka.consumer({
        groupId: options.groupId,
        readUncommitted: false,
        maxBytesPerPartition: options.maxBytesPerPartition,
        // One batch per lane: kafkajs fetches again only when every batch of a fetch is done, so a
        // fetch of fewer partitions than there are lanes leaves lanes idle (two of three: 10-20%
        // slower, measured), and one of more makes the last batches wait for a lane.
        maxBytes: options.maxBytesPerPartition * options.partitionsConcurrently,
        maxWaitTimeInMs: 500,
        sessionTimeout: options.sessionTimeoutMs ?? 30_000,
        heartbeatInterval: Math.min(3000, Math.floor((options.sessionTimeoutMs ?? 30_000) / 3)),
      }),
      epochs: Promise.resolve(new Map()),
      earlierFiles: new Map(),
    }));
    this.producer = options.kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    const registers = [options.metrics];
    this.m = {
      consumed: new Counter({
        name: 'conveyor_sink_consumed_total',
        help: 'Records consumed, by topic',
        labelNames: ['topic'],
        registers,
      }),
      written: new Counter({
        name: 'conveyor_sink_events_written_total',
        help: 'Distinct events written to bronze, by source',
        labelNames: ['source'],
        registers,
      }),
      duplicates: new Counter({
        name: 'conveyor_sink_duplicates_dropped_total',
        help: 'Records dropped as duplicates of an event already claimed, by source',
        labelNames: ['source'],
        registers,
      }),
      dlq: new Counter({
        name: 'conveyor_sink_dlq_total',
        help: 'Records sent to the DLQ, by reason',
        labelNames: ['reason'],
        registers,
      }),
      bytes: new Counter({
        name: 'conveyor_sink_bytes_written_total',
        help: 'Bytes written to the lake, by layer',
        labelNames: ['layer'],
        registers,
      }),
      lag: new Gauge({
        name: 'conveyor_sink_lag',
        help: 'Records behind the high watermark after the last batch, by topic and partition',
        labelNames: ['topic', 'partition'],
        registers,
      }),
      batchSeconds: new Histogram({
        name: 'conveyor_sink_batch_seconds',
        help: 'Time from fetched batch to committed offsets',
        buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
    };
  }

  /** Healthy: started, no consumer crashed for good, and not stalled by a failed re-subscription. */
  get isRunning(): boolean {
    return this.running && !this.stalled;
  }

  async start(): Promise<void> {
    const { kafka, topics } = this.options;
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureTopics(admin, [{ topic: DLQ_TOPIC, numPartitions: 3 }]);
    } finally {
      await admin.disconnect();
    }
    await this.producer.connect();
    for (const [index, member] of this.members.entries()) {
      const { consumer } = member;
      await consumer.connect();
      consumer.on(consumer.events.GROUP_JOIN, ({ payload }) => {
        this.options.logger.info({ consumer: index, assigned: payload.memberAssignment }, 'joined the consumer group');
        member.earlierFiles.clear();
        // Batches of this assignment wait for these epochs (processBatch); a failure fails them, and
        // kafkajs's restart of the consumer joins (and takes them) again.
        member.epochs = takeEpochs(this.options.pool, payload.memberAssignment);
        member.epochs.catch((error) =>
          this.options.logger.warn({ consumer: index, err: error }, 'taking partition epochs failed'),
        );
      });
      consumer.on(consumer.events.CRASH, (event) => {
        const { error, restart } = event.payload;
        // kafkajs restarts the consumer after a retriable error: the sink is still healthy then.
        if (!restart) this.running = false;
        this.options.logger.error({ consumer: index, err: error, restart }, 'sink consumer crashed');
      });
    }
    await this.consume();
    if (!Array.isArray(topics)) {
      this.refreshTimer = setInterval(() => this.findNewTopics(), this.options.topicRefreshMs ?? TOPIC_REFRESH_MS);
      this.refreshTimer.unref();
    }
    this.running = true;
    if (this.options.dedupeRetentionDays > 0) {
      // A first run soon after start: a sink restarted more often than every ten minutes still expires.
      this.expiryStart = setTimeout(() => this.expire(), this.options.expiryFirstMs ?? EXPIRY_FIRST_MS);
      this.expiryStart.unref();
      this.expiryTimer = setInterval(() => this.expire(), EXPIRY_EVERY_MS);
      this.expiryTimer.unref();
    }
  }

  private async topicsToConsume(): Promise<string[]> {
    const { kafka, topics } = this.options;
    if (Array.isArray(topics)) return topics;
    const admin = kafka.admin();
    await admin.connect();
    try {
      return (await admin.listTopics()).filter((t) => topics.test(t)).sort();
    } finally {
      await admin.disconnect();
    }
  }

  /** Subscribes to the topics to consume (none yet is fine: a pattern waits for them) and runs. */
  private async consume(): Promise<void> {
    const topics = await this.topicsToConsume();
    if (topics.length === 0) {
      this.subscribed = new Set();
      this.options.logger.info({ pattern: String(this.options.topics) }, 'no topic matches yet; looking again');
      return;
    }
    try {
      // Every member subscribes before any runs, and all run at once, so that they join together.
      for (const { consumer } of this.members) await consumer.subscribe({ topics, fromBeginning: true });
      await Promise.all(
        this.members.map((member) =>
          member.consumer.run({
            autoCommit: false,
            eachBatchAutoResolve: false,
            partitionsConsumedConcurrently: this.options.partitionsConcurrently,
            eachBatch: (payload) => this.handleBatch(member, payload),
          }),
        ),
      );
    } catch (error) {
      // Half started, a member could not subscribe again: all stop, and the topics are not taken as
      // subscribed, so the next look for new topics tries the whole of it again.
      await Promise.all(this.members.map(({ consumer }) => consumer.stop().catch(() => undefined)));
      throw error;
    }
    this.subscribed = new Set(topics);
    this.consuming = true;
    this.stalled = false;
  }

  /**
   * A new source's topic is created by the relay on its first event. kafkajs cannot add a topic to a
   * running consumer, so the sink stops it (the batch in flight is written and committed first) and
   * runs it again over every matching topic.
   */
  private findNewTopics(): void {
    if (this.stopping || this.refresh) return;
    this.refresh = this.resubscribeIfNew().finally(() => {
      this.refresh = undefined;
    });
  }

  private async resubscribeIfNew(): Promise<void> {
    try {
      const added = (await this.topicsToConsume()).filter((t) => !this.subscribed.has(t));
      if (added.length === 0 || this.stopping) return;
      this.options.logger.info({ added }, 'new topics; re-subscribing');
      if (this.consuming) await Promise.all(this.members.map(({ consumer }) => consumer.stop()));
      this.consuming = false;
      await this.consume();
    } catch (error) {
      if (!this.consuming) this.stalled = true;
      this.options.logger.warn(
        { err: error, consuming: this.consuming },
        this.consuming
          ? 'looking for new topics failed; will retry'
          : 're-subscribing failed, consumers stopped; will retry',
      );
    }
  }

  /** Waits for the batch in progress to be written and committed, then leaves the group. */
  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.refreshTimer);
    await this.refresh;
    clearTimeout(this.expiryStart);
    clearInterval(this.expiryTimer);
    await this.expiry;
    await Promise.all(this.members.map(({ consumer }) => consumer.disconnect()));
    await this.producer.disconnect();
    this.running = false;
  }

  private expire(): void {
    if (this.expiry || this.stopping) return;
    const started = performance.now();
    this.expiry = expireClaims(this.options.pool, this.options.dedupeRetentionDays, { stopped: () => this.stopping })
      .then((removed) => {
        const seconds = Number(((performance.now() - started) / 1000).toFixed(1));
        if (removed > 0) this.options.logger.info({ removed, seconds }, 'expired dedupe claims');
      })
      .catch((error) => this.options.logger.warn({ err: error }, 'dedupe claim expiry failed; will retry'))
      .finally(() => {
        this.expiry = undefined;
      });
  }

  private async handleBatch(member: Member, payload: EachBatchPayload): Promise<void> {
    try {
      await this.processBatch(member, payload);
    } catch (error) {
      // The retry may cut its batches elsewhere: this attempt's files must be looked for again.
      const { topic, partition } = payload.batch;
      for (const key of [...member.earlierFiles.keys()]) {
        if (key.endsWith(`\u0000${topic}+${partition}`)) member.earlierFiles.delete(key);
      }
      throw error;
    }
  }

  private async processBatch(member: Member, payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, heartbeat } = payload;
    const { topic, partition } = batch;
    const started = process.hrtime.bigint();
    const next = (BigInt(batch.lastOffset()) + 1n).toString();
    const { events, rejected } = await this.decode(topic, partition, batch.messages);
    await this.sendToDlq(topic, partition, rejected);
    const claim = claimEvents(this.options.pool, events);
    // Let the claim statement reach Postgres, then build the files while it runs: usually every
    // record is new, and the files built from all of them are the ones to write.
    await new Promise(setImmediate);
    const speculative = bronzeUnits(events, this.options.rotation);
    const { kept, duplicates } = await claim;
    const built = kept.length === events.length ? speculative : bronzeUnits(kept, this.options.rotation);
    // Usually one unit (none when nothing is kept: the offsets are still committed). Where a file
    // rotates inside the batch, the records before it are committed first (see bronzeUnits: that keeps
    // file names the same on any replay).
    const units = built.length > 0 ? built : [{ files: [], events: 0 }];
    const committed = await this.writeAndCommit(member, payload, units, kept, next);
    if (!committed) return;
    resolveOffset(batch.lastOffset());
    await heartbeat();

    this.m.consumed.inc({ topic }, batch.messages.length);
    this.m.lag.set({ topic, partition: String(partition) }, Number(batch.offsetLag()));
    this.m.batchSeconds.observe(Number(process.hrtime.bigint() - started) / 1e9);
    for (const [source, n] of countBySource(kept)) this.m.written.inc({ source }, n);
    for (const [source, n] of countBySource(duplicates)) this.m.duplicates.inc({ source }, n);
    if (duplicates.length > 0 || rejected.length > 0) {
      const reasons: Record<string, number> = {};
      for (const r of rejected) reasons[r.rejection.reason] = (reasons[r.rejection.reason] ?? 0) + 1;
      this.options.logger.info(
        {
          topic,
          partition,
          offset: batch.firstOffset(),
          written: kept.length,
          duplicates: duplicates.length,
          dlq: reasons,
        },
        'batch committed with duplicates or rejects',
      );
    }
  }

  /**
   * Writes each unit's files and commits its offsets, under the partition's fence (fence.ts). False
   * when the partition turned out to be another sink's: nothing more is written or committed.
   */
  private async writeAndCommit(
    member: Member,
    { batch, heartbeat, isStale }: EachBatchPayload,
    units: BronzeUnit[],
    kept: LakeEvent[],
    next: string,
  ): Promise<boolean> {
    const { topic, partition } = batch;
    const epoch = (await member.epochs).get(partitionKey(topic, partition));
    if (epoch === undefined)
      throw new Error(`no fencing epoch for ${topic}[${partition}]: not in this sink's assignment`);
    this.stopOnceAt('sink-stop-before-fence');
    try {
      return await withFence(this.options.pool, { topic, partition, epoch }, heartbeat, async () => {
        let written = 0;
        let from = BigInt(batch.firstOffset() ?? next);
        for (const [i, unit] of units.entries()) {
          const last = i === units.length - 1;
          const offset = last ? next : kept[written + unit.events]!.offset;
          this.stopOnceAt('sink-stop-before-write');
          const events = kept.slice(written, written + unit.events);
          await this.write(member, unit.files, events, { topic, partition, from, to: BigInt(offset) - 1n });
          written += unit.events;
          from = BigInt(offset);
          // After a rebalance this partition belongs to another member: leave the commit to it.
          if (isStale()) return false;
          await member.consumer.commitOffsets([{ topic, partition, offset }]);
          await heartbeat();
        }
        return true;
      });
    } catch (error) {
      if (!(error instanceof StaleOwnerError)) throw error;
      // A newer holder has the partition: this sink stalled past its session. Write nothing; the
      // heartbeat makes kafkajs find out and rejoin (a pause keeps a refetch loop from spinning).
      this.options.logger.warn({ topic, partition, err: error }, 'partition taken over by another sink; batch dropped');
      await heartbeat().catch(() => undefined);
      await new Promise((resolve) => setTimeout(resolve, 1000));
      return false;
    }
  }

  private async decode(
    topic: string,
    partition: number,
    messages: KafkaMessage[],
  ): Promise<{ events: LakeEvent[]; rejected: Rejected[] }> {
    const events: LakeEvent[] = [];
    const rejected: Rejected[] = [];
    for (const message of messages) {
      try {
        const id = wireId(message.value);
        // No await on a cache hit: it cost about 0.5 of the 4 µs a record takes to decode and check.
        const reader = this.readers.get(id) ?? (await this.readerOf(id));
        const value = decodeWith(reader, message.value!);
        events.push(checkEnvelope(value, { topic, partition, offset: message.offset }));
      } catch (error) {
        if (!(error instanceof Rejection)) throw error;
        rejected.push({ message, rejection: error });
      }
    }
    return { events, rejected };
  }

  private stopOnceAt(point: string): void {
    if (this.failpoint !== point) return;
    this.failpoint = undefined;
    process.kill(process.pid, 'SIGSTOP');
  }

  /** A schema id the registry does not know is the record's fault; any other registry error is ours. */
  private async readerOf(id: number): Promise<Reader> {
    try {
      const reader = readerFor(await this.options.registry.typeOf(id));
      this.readers.set(id, reader);
      return reader;
    } catch (error) {
      if (error instanceof RegistryError && error.status === 404) {
        throw new Rejection('unknown_schema', `schema id ${id} is not in the registry`, 'UnknownSchemaError');
      }
      throw error;
    }
  }

  private async sendToDlq(topic: string, partition: number, rejected: Rejected[]): Promise<void> {
    if (rejected.length === 0) return;
    const failedAt = new Date().toISOString();
    await this.producer.send({
      topic: DLQ_TOPIC,
      acks: -1,
      messages: rejected.map(({ message, rejection }) => ({
        key: message.key,
        value: message.value,
        headers: {
          ...message.headers,
          [DLQ_HEADER.reason]: rejection.reason,
          [DLQ_HEADER.errorClass]: rejection.errorClass,
          [DLQ_HEADER.message]: rejection.message,
          [DLQ_HEADER.stage]: 'sink',
          [DLQ_HEADER.originalTopic]: topic,
          [DLQ_HEADER.originalPartition]: String(partition),
          [DLQ_HEADER.originalOffset]: message.offset,
          [DLQ_HEADER.failedAt]: failedAt,
        },
      })),
    });
    for (const { rejection } of rejected) this.m.dlq.inc({ reason: rejection.reason });
  }

  /**
   * Writes a commit unit's files durably: bronze (`files`), then silver from the same `events`;
   * `range` is the offsets the unit's commit will cover.
   */
  private async write(member: Member, files: BronzeFile[], events: LakeEvent[], range: OffsetRange): Promise<void> {
    if (files.length === 0) return;
    const { storage, silver, entitySources, pool } = this.options;
    for (let i = 0; i < files.length; i += BRONZE_WRITES_IN_FLIGHT) {
      await Promise.all(files.slice(i, i + BRONZE_WRITES_IN_FLIGHT).map((f) => storage.put(f.key, f.chunks)));
    }
    this.m.bytes.inc(
      { layer: 'bronze' },
      files.reduce((sum, f) => sum + f.bytes, 0),
    );
    const eventFiles = await silver.writeEvents(events);
    this.m.bytes.inc({ layer: 'silver' }, eventFiles.bytes);
    await this.removeSuperseded(member, [...files.map((f) => f.key), ...eventFiles.keys], range);

    const bySource = new Map<string, BronzeFile[]>();
    for (const f of files) {
      if (!entitySources.has(f.source)) continue;
      const list = bySource.get(f.source) ?? [];
      list.push(f);
      bySource.set(f.source, list);
    }
    for (const [source, list] of bySource) {
      // Sinks on other machines merge into the same dataset: one merge at a time per dataset.
      const merged = await withTransaction(pool, async (client) => {
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`conveyor.silver.${source}_latest`]);
        return silver.mergeEntities(source, list);
      });
      this.m.bytes.inc({ layer: 'silver' }, merged.bytes);
    }
  }

  /**
   * A file of this topic-partition, in a folder just written, whose first record lies in the offsets
   * this unit covers, and that the unit did not write, is left from an earlier attempt that cut its
   * batches elsewhere (a crash, another fetch size, a replay from offset 0): those records are now in
   * the unit's files, so it goes. Every such file is removed by the unit holding its first record,
   * before that unit commits; so a replay, however batched, converges on one copy of each record.
   * Only files older than this sink's hold on the partition can be such leftovers, so each folder is
   * listed once per hold, not once per unit.
   */
  private async removeSuperseded(
    member: Member,
    written: string[],
    { topic, partition, from, to }: OffsetRange,
  ): Promise<void> {
    const { storage } = this.options;
    const keep = new Set(written);
    const folders = new Set(written.map((k) => k.slice(0, k.lastIndexOf('/'))));
    for (const folder of folders) {
      const cacheKey = `${folder}\u0000${topic}+${partition}`;
      let earlier = member.earlierFiles.get(cacheKey);
      if (earlier === undefined) {
        earlier = new Map();
        for (const key of await storage.list(folder)) {
          if (keep.has(key) || key.lastIndexOf('/') !== folder.length) continue;
          const first = firstOffsetInName(key.slice(folder.length + 1), topic, partition);
          if (first !== undefined && first >= from) earlier.set(key, first);
        }
        // Bounded: folders come with every ingest hour. Forgetting is safe: a folder listed again gives
        // the files of this partition from this unit's first offset on, which this hold has not written.
        if (member.earlierFiles.size >= EARLIER_FOLDERS_KEPT) member.earlierFiles.clear();
        member.earlierFiles.set(cacheKey, earlier);
      }
      for (const [key, first] of earlier) {
        if (first < from || first > to || keep.has(key)) continue;
        await storage.remove(key);
        earlier.delete(key);
      }
    }
  }
}

/** One metric update per source, not per event (a labelled inc per event showed in the profile). */
function countBySource(events: LakeEvent[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const { source } of events) counts.set(source, (counts.get(source) ?? 0) + 1);
  return counts;
}

interface OffsetRange {
  topic: string;
  partition: number;
  from: bigint;
  to: bigint;
}
