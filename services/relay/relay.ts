import os from 'node:os';
import type { Kafka, Producer } from 'kafkajs';
import pg from 'pg';
import { type Pool, withTransaction } from '../../libs/db/index.ts';
import { type Admin, DLQ_HEADER, DLQ_TOPIC, ensureTopics, HEADER } from '../../libs/kafka/index.ts';
import { Counter, Gauge, Histogram, type Logger, type Registry } from '../../libs/observability/index.ts';
import { OUTBOX_SHARDS } from '../../libs/outbox/index.ts';
import { contractFor, type TopicContract } from '../../libs/registry/contracts.ts';
import { SchemaGateError, type SchemaRegistryClient, valueSubject } from '../../libs/registry/index.ts';
import { EncodeError, encodeRow, type PendingRow } from './encode.ts';
import { ShardLeases } from './leases.ts';

/** A lost LISTEN connection is made again after this, then twice as long after each failed try. */
const LISTEN_RETRY_FIRST_MS = 1000;
const LISTEN_RETRY_MAX_MS = 30_000;

export interface RelayOptions {
  pool: Pool;
  /** Used for LISTEN, on a connection of its own. */
  databaseUrl: string;
  kafka: Kafka;
  registry: SchemaRegistryClient;
  logger: Logger;
  metrics: Registry;
  owner?: string;
  batchSize?: number;
  pollIntervalMs?: number;
  leaseTtlMs?: number;
  autoRegister?: boolean;
  topicPartitions?: number;
  /** Published rows older than this are deleted; 0 keeps them. */
  retentionMs?: number;
  /** Defaults to conveyor-relay-<database name>: deployments sharing a Kafka cluster must not fence each other. */
  transactionalIdPrefix?: string;
  schemasDir?: string;
}

interface TopicState {
  contract: TopicContract;
  schemaId: number;
}

type OutMessage = { key: string; value: Buffer; headers: Record<string, string> };

/** What a read covers: the held shards, less the topics the schema gate holds back. */
interface Scope {
  shards: number[];
  blocked: string[];
  key: string;
}

/** Rows read and encoded for one Kafka transaction. */
interface Batch {
  /** Scope key of the read; the batch is published only if it is still the relay's scope. */
  scope: string;
  topicMessages: Array<{ topic: string; messages: OutMessage[] }>;
  /** What marking needs of the rows; their payloads are not kept once encoded. */
  published: Array<{ id: string; topic: string; createdMs: number }>;
  failed: Array<{ id: string; eventId: string; source: string; reason: string }>;
  ids: string[];
  /** Where the next scan starts once this batch is in Kafka (see floor). */
  nextFloor: string;
}

// The CTE picks the batch from the outbox_pending_id index whatever the table statistics say (a
// sudden backlog must not turn each batch into a join over the whole table); $4 skips the index
// entries of rows this relay just published (see floor); $5 are the rows of the batch in Kafka and of
// the batch whose marking update is still running (see marking).
const PENDING_SQL = `
  WITH next AS MATERIALIZED (
    SELECT id, topic, source, event_id, created_at FROM outbox
    WHERE id > $4 AND shard = ANY($1::smallint[]) AND published_at IS NULL AND failed_at IS NULL
      AND NOT (topic = ANY($3::text[])) AND id <> ALL($5::bigint[])
    ORDER BY id
    LIMIT $2
  )
  SELECT o.id::text AS id, o.topic, r.source, r.event_id, r.event_type, r.entity_key,
         floor(extract(epoch FROM o.created_at) * 1000)::float8 AS created_ms,
         floor(extract(epoch FROM r.event_time) * 1000)::float8 AS event_ms,
         floor(extract(epoch FROM r.ingested_at) * 1000)::float8 AS ingested_ms,
         r.payload::text AS payload, r.lineage::text AS lineage
  FROM next o JOIN raw_events r USING (source, event_id)
  ORDER BY o.id`;

/**
 * After a commit the coordinator still writes its markers, and the next transaction's first request
 * is answered CONCURRENT_TRANSACTIONS until it is done (a few ms). kafkajs's default first retry waits
 * 300 ms; the Java client retries such requests after 20 ms.
 */
export const TRANSACTION_RETRY = { initialRetryTime: 20, maxRetryTime: 5000, retries: 12 };

/**
 * kafkajs puts a partition's records of one produce request in one record batch, and the broker
 * refuses batches over message.max.bytes (1 MiB by default): a transaction sends its rows in produce
 * requests of at most this many bytes (estimated), so a large batch on few partitions still goes.
 */
const PRODUCE_REQUEST_BYTES = 768 * 1024;
/** Record framing and the four headers, over the value and key. */
const RECORD_OVERHEAD_BYTES = 256;

/** The batch's records in produce requests of at most PRODUCE_REQUEST_BYTES (at least one record each), in order. */
export function produceRequests(topicMessages: Batch['topicMessages']): Array<Batch['topicMessages']> {
  const requests: Array<Batch['topicMessages']> = [];
  let request: Batch['topicMessages'] = [];
  let bytes = 0;
  for (const { topic, messages } of topicMessages) {
    let part: OutMessage[] = [];
    request.push({ topic, messages: part });
    for (const message of messages) {
      const size = message.value.length + message.key.length + RECORD_OVERHEAD_BYTES;
      if (bytes > 0 && bytes + size > PRODUCE_REQUEST_BYTES) {
        requests.push(request);
        part = [];
        request = [{ topic, messages: part }];
        bytes = 0;
      }
      part.push(message);
      bytes += size;
    }
  }
  requests.push(request);
  return requests;
}

/**
 * Publishes the outbox rows of the shards it leases to Kafka, in id order, one Kafka transaction per
 * batch, then marks them published. At least once: a crash between the Kafka commit and the Postgres
 * update re-publishes the same rows, with the same event ids, in the same order. The next batch is
 * read and encoded while a batch is in Kafka and while it is marked; that read leaves both batches'
 * rows out, and its rows go to Kafka only after that transaction committed, in the same scope.
 */
export class Relay {
  readonly owner: string;
  private readonly o: Required<Omit<RelayOptions, 'owner' | 'schemasDir'>> & { schemasDir?: string };
  private readonly leases: ShardLeases;
  /** Shards this relay holds a lease on; the pump publishes only their rows. */
  private readonly held = new Set<number>();
  /** Local time until which the leases are surely valid (renewal start + TTL). */
  private leaseValidUntil = 0;
  private readonly transactionTimeoutMs: number;
  private pumping?: Promise<void>;
  /**
   * Lowest outbox id the next batch may start after. Only moves within one scope (held shards and
   * blocked topics); any change of scope scans from the start, so a shard's rows are never skipped.
   */
  private floor = '0';
  private floorScope = '';
  private inFlight?: Promise<unknown>;
  /** The marking update of the last batch committed to Kafka, if not settled yet; at most one runs. */
  private marking?: { ids: string[]; done: Promise<void> };
  private readonly topics = new Map<string, TopicState>();
  /** Topics whose schema the gate refused, with when to try again. Their rows wait. */
  private readonly blocked = new Map<string, number>();
  private admin?: Admin;
  private listener?: pg.Client;
  private listenRetry?: NodeJS.Timeout;
  private listenRetryMs = LISTEN_RETRY_FIRST_MS;
  private running = false;
  private wakers: Array<() => void> = [];
  /** Counts wake-ups, so a notification that came during a read is not slept through. */
  private wakeups = 0;
  private timers: NodeJS.Timeout[] = [];
  private readonly m;

  constructor(options: RelayOptions) {
    this.owner = options.owner ?? `${os.hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.o = {
      batchSize: 500,
      pollIntervalMs: 1000,
      leaseTtlMs: 15_000,
      autoRegister: false,
      topicPartitions: 6,
      retentionMs: 24 * 3600_000,
      transactionalIdPrefix: `conveyor-relay-${decodeURIComponent(new URL(options.databaseUrl).pathname.slice(1))}`,
      ...options,
    };
    this.leases = new ShardLeases(options.pool, this.owner, OUTBOX_SHARDS, this.o.leaseTtlMs);
    // Kafka aborts a transaction open longer than this; a transaction is only started while the lease
    // has more than this left, so a stalled relay cannot commit after another one took its shards.
    this.transactionTimeoutMs = Math.floor((this.o.leaseTtlMs * 2) / 3);
    const registers = [options.metrics];
    this.m = {
      published: new Counter({
        name: 'conveyor_relay_published_total',
        help: 'Outbox rows published to Kafka',
        labelNames: ['topic'],
        registers,
      }),
      failures: new Counter({
        name: 'conveyor_relay_failures_total',
        help: 'Relay failures by reason (encode: row sent to the DLQ; publish: batch retried; schema: topic held back)',
        labelNames: ['reason'],
        registers,
      }),
      schemaRefusals: new Counter({
        name: 'conveyor_relay_schema_refusals_total',
        help: 'Times the schema gate refused a topic schema; its rows wait',
        labelNames: ['topic'],
        registers,
      }),
      backlog: new Gauge({ name: 'conveyor_relay_outbox_backlog', help: 'Unpublished outbox rows', registers }),
      failed: new Gauge({
        name: 'conveyor_relay_outbox_failed',
        help: 'Outbox rows dead-lettered by the relay (payload did not fit the contract), waiting for `conveyor dlq replay`',
        registers,
      }),
      oldestAge: new Gauge({
        name: 'conveyor_relay_oldest_unpublished_age_seconds',
        help: 'Age of the oldest unpublished outbox row',
        registers,
      }),
      shardsHeld: new Gauge({ name: 'conveyor_relay_shards_held', help: 'Outbox shards this relay holds', registers }),
      latency: new Histogram({
        name: 'conveyor_relay_commit_to_ack_seconds',
        help: 'From the outbox row commit to the Kafka transaction commit',
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
        registers,
      }),
    };
  }

  get shardsHeld(): number[] {
    return [...this.held].sort((a, b) => a - b);
  }

  async start(): Promise<void> {
    this.running = true;
    this.admin = this.o.kafka.admin();
    await this.admin.connect();
    await ensureTopics(this.admin, [{ topic: DLQ_TOPIC, numPartitions: 3 }]);
    await this.listen();
    await this.balance();
    this.every(Math.max(200, Math.floor(this.o.leaseTtlMs / 5)), () => this.balance());
    this.every(5000, () => this.measureBacklog());
    await this.measureFailed();
    this.every(60_000, () => this.measureFailed());
    if (this.o.retentionMs > 0) this.every(60_000, () => this.deletePublished());
    this.pumping = this.pump();
    this.o.logger.info({ owner: this.owner, shards: this.shardsHeld }, 'relay started');
  }

  /** Stops claiming, lets the batch in flight finish, releases the leases and disconnects. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const timer of this.timers) clearInterval(timer);
    clearTimeout(this.listenRetry);
    this.wake();
    await this.pumping;
    this.held.clear();
    await this.leases.leave().catch((error) => this.o.logger.warn({ err: error }, 'could not release leases'));
    await this.listener?.end().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
    this.o.logger.info({ owner: this.owner }, 'relay stopped');
  }

  /** LISTEN on a connection of its own; one lost is made again (see listenLost). */
  private async listen(): Promise<void> {
    const client = new pg.Client({ connectionString: this.o.databaseUrl, application_name: 'conveyor-relay-listen' });
    client.on('notification', () => this.wake());
    client.on('error', (error) => this.listenLost(client, error));
    client.on('end', () => this.listenLost(client));
    try {
      await client.connect();
      await client.query('LISTEN conveyor_outbox');
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
    this.listener = client;
    this.listenRetryMs = LISTEN_RETRY_FIRST_MS;
  }

  /**
   * A lost LISTEN connection costs latency only (polling and each lease renewal wake the pump), and is
   * made again, waiting longer after each failed try; rows that committed meanwhile are looked for then.
   */
  private listenLost(client: pg.Client, error?: Error): void {
    if (this.listener !== client || !this.running) return;
    this.listener = undefined;
    client.end().catch(() => undefined);
    this.o.logger.warn(
      { err: error, retryInMs: this.listenRetryMs },
      'LISTEN connection lost; polling until it is back',
    );
    const retry = () => {
      this.listenRetry = undefined;
      if (!this.running) return;
      this.listen().then(
        () => {
          this.o.logger.info('LISTEN connection back');
          this.wake();
        },
        (reason: unknown) => {
          this.listenRetryMs = Math.min(this.listenRetryMs * 2, LISTEN_RETRY_MAX_MS);
          this.o.logger.warn({ err: reason, retryInMs: this.listenRetryMs }, 'LISTEN reconnect failed');
          this.listenRetry = setTimeout(retry, this.listenRetryMs);
        },
      );
    };
    this.listenRetry = setTimeout(retry, this.listenRetryMs);
  }

  private every(ms: number, task: () => Promise<unknown>): void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy || !this.running) return;
      busy = true;
      task()
        .catch((error) => this.o.logger.warn({ err: error }, 'relay background task failed'))
        .finally(() => {
          busy = false;
        });
    }, ms);
    this.timers.push(timer);
  }

  private wake(): void {
    this.wakeups++;
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakers.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Renews leases, forgets shards lost to expiry, releases extras above the fair share, claims the rest. */
  private async balance(): Promise<void> {
    const renewedAt = Date.now();
    const { held, fairShare } = await this.leases.renew();
    this.leaseValidUntil = renewedAt + this.o.leaseTtlMs;
    const stillHeld = new Set(held);
    for (const shard of this.held) {
      if (!stillHeld.has(shard)) {
        this.o.logger.warn({ shard }, 'lease lost; leaving the shard');
        this.held.delete(shard);
      }
    }
    const extra = held.slice(fairShare);
    if (extra.length > 0) {
      // Rows of these shards may be in the batch in flight: let it settle before another relay can claim them.
      for (const shard of extra) this.held.delete(shard);
      await this.inFlight;
      // Marked before release, so the next holder does not publish them again (a failure is the pump's to handle).
      await this.marking?.done.catch(() => undefined);
      await this.leases.release(extra);
    }
    for (const shard of held.slice(0, fairShare)) this.held.add(shard);
    if (this.running) {
      for (const shard of await this.leases.claim(fairShare - this.held.size)) this.held.add(shard);
    }
    this.m.shardsHeld.set(this.held.size);
    this.wake();
  }

  /** The lease is long enough that a transaction started now times out before the lease could move. */
  private leaseAllowsTransaction(): boolean {
    return this.leaseValidUntil - Date.now() > this.transactionTimeoutMs;
  }

  private async pump(): Promise<void> {
    let producer: Producer | undefined;
    let backoffMs = 250;
    // Read while the batch before it was in Kafka.
    let next: Batch | undefined;
    while (this.running) {
      try {
        if (this.held.size === 0 || !this.leaseAllowsTransaction()) {
          next = undefined;
          await this.settleMarking();
          await this.sleep(this.o.pollIntervalMs);
          continue;
        }
        if (!producer) {
          producer = this.o.kafka.producer({
            transactionalId: `${this.o.transactionalIdPrefix}-${this.owner}`,
            idempotent: true,
            maxInFlightRequests: 1,
            transactionTimeout: this.transactionTimeoutMs,
            retry: TRANSACTION_RETRY,
          });
          await producer.connect();
        }
        let batch = next;
        next = undefined;
        if (batch?.scope !== this.scope().key) {
          const scope = this.scope();
          const wakeups = this.wakeups;
          batch = await this.readBatch(
            scope,
            scope.key === this.floorScope ? this.floor : '0',
            this.marking?.ids ?? [],
          );
          // Moves past a batch only once it is in Kafka.
          this.floor = '0';
          if (!batch) {
            await this.settleMarking();
            if (this.wakeups === wakeups) await this.sleep(this.o.pollIntervalMs);
            continue;
          }
        }
        // Checked with no await before the transaction starts: balance() waits for inFlight before it
        // releases a shard, and the lease must outlast the transaction.
        if (batch.scope !== this.scope().key || !this.leaseAllowsTransaction()) continue;
        const publishing = this.publishBatch(batch, producer);
        this.inFlight = publishing;
        next = await publishing;
        backoffMs = 250;
      } catch (error) {
        next = undefined;
        this.m.failures.inc({ reason: 'publish' });
        this.o.logger.error({ err: error }, 'publishing failed; retrying');
        // Rows whose marking failed are pending again: scan from the start without leaving any out.
        await this.marking?.done.catch(() => undefined);
        this.marking = undefined;
        this.floor = '0';
        // A topic deleted under the relay fails every send to it: look at each topic (and schema) again.
        this.topics.clear();
        await producer?.disconnect().catch(() => undefined);
        producer = undefined;
        await this.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 10_000);
      } finally {
        this.inFlight = undefined;
      }
    }
    await this.settleMarking().catch((error) => this.o.logger.warn({ err: error }, 'could not mark the last batch'));
    await producer?.disconnect().catch(() => undefined);
  }

  private scope(): Scope {
    const now = Date.now();
    const shards = [...this.held].sort((a, b) => a - b);
    const blocked = [...this.blocked].filter(([, retryAt]) => retryAt > now).map(([topic]) => topic);
    return { shards, blocked, key: `${shards.join(',')}|${blocked.join(',')}` };
  }

  /** Waits for the marking update in flight; throws if it failed. */
  private async settleMarking(): Promise<void> {
    const marking = this.marking;
    if (!marking) return;
    try {
      await marking.done;
    } finally {
      if (this.marking === marking) this.marking = undefined;
    }
  }

  private async topicState(topic: string, source: string): Promise<TopicState | undefined> {
    const known = this.topics.get(topic);
    if (known) return known;
    const retryAt = this.blocked.get(topic);
    if (retryAt !== undefined && Date.now() < retryAt) return undefined;
    const contract = contractFor(source, this.o.schemasDir);
    try {
      const schemaId = await this.o.registry.gate(valueSubject(topic), contract.schema, {
        autoRegister: this.o.autoRegister,
      });
      await ensureTopics(this.admin!, [{ topic, numPartitions: this.o.topicPartitions }]);
      const state = { contract, schemaId };
      this.topics.set(topic, state);
      this.blocked.delete(topic);
      return state;
    } catch (error) {
      if (!(error instanceof SchemaGateError)) throw error;
      this.m.schemaRefusals.inc({ topic });
      this.m.failures.inc({ reason: 'schema' });
      this.blocked.set(topic, Date.now() + 30_000);
      this.o.logger.error({ topic, subject: error.subject, problems: error.problems }, error.message);
      return undefined;
    }
  }

  /**
   * Puts the batch in one Kafka transaction, reading the next batch meanwhile, then starts marking it;
   * returns the next batch (undefined: none was pending when it was read).
   */
  private async publishBatch(batch: Batch, producer: Producer): Promise<Batch | undefined> {
    const transaction = await producer.transaction();
    const scope = this.scope();
    // Only while draining a backlog (a full batch): when caught up, a read after the commit also
    // catches the rows that commit during the transaction, which keeps commit-to-ack short.
    const readAhead =
      batch.nextFloor === '0'
        ? Promise.resolve(undefined)
        : this.readBatch(scope, scope.key === batch.scope ? batch.nextFloor : '0', [
            ...(this.marking?.ids ?? []),
            ...batch.ids,
          ]);
    // Awaited below on every path; until then a failure must not be an unhandled rejection.
    readAhead.catch(() => undefined);
    try {
      for (const topicMessages of produceRequests(batch.topicMessages)) {
        await transaction.sendBatch({ topicMessages, acks: -1 });
      }
      if (this.leaseValidUntil <= Date.now()) throw new Error('shard leases lapsed during the batch; aborting it');
      await transaction.commit();
    } catch (error) {
      await transaction.abort().catch(() => undefined);
      // Read on the assumption that this batch would be in Kafka: dropped.
      await readAhead.catch(() => undefined);
      throw error;
    }
    const ackedAt = Date.now();
    this.floor = batch.nextFloor;
    this.floorScope = batch.scope;

    // Kafka has the rows; a crash before they are marked re-publishes them (same ids, same order).
    await this.settleMarking();
    const done = this.markBatch(batch, ackedAt);
    // Awaited by the next read, balance() or stop(); until then a failure must not be an unhandled rejection.
    done.catch(() => undefined);
    this.marking = { ids: batch.ids, done };
    return await readAhead;
  }

  /** Reads the next pending rows (leaving `exclude` out) and encodes them; undefined when none can go now. */
  private async readBatch(scope: Scope, floor: string, exclude: string[]): Promise<Batch | undefined> {
    const { rows } = await this.o.pool.query<PendingRow>(PENDING_SQL, [
      scope.shards,
      this.o.batchSize,
      scope.blocked,
      floor,
      exclude,
    ]);
    // While draining a backlog, the next scan starts after this batch; when caught up it starts from
    // the beginning again, which also picks up rows that committed late with a lower id.
    const nextFloor = rows.length === this.o.batchSize ? rows[rows.length - 1]!.id : '0';
    if (rows.length === 0) return undefined;

    const byTopic = new Map<string, OutMessage[]>();
    const dlq: OutMessage[] = [];
    const published: Batch['published'] = [];
    const failed: Batch['failed'] = [];
    for (const row of rows) {
      const state = await this.topicState(row.topic, row.source);
      // Refused schema: this topic's rows (and so every later row of their keys) wait for the next try.
      if (!state) continue;
      const headers = {
        [HEADER.eventId]: row.event_id,
        [HEADER.source]: row.source,
        [HEADER.eventType]: row.event_type,
        [HEADER.outboxId]: row.id,
      };
      try {
        const value = encodeRow(row, state.contract, state.schemaId);
        let messages = byTopic.get(row.topic);
        if (!messages) {
          messages = [];
          byTopic.set(row.topic, messages);
        }
        messages.push({ key: row.entity_key, value, headers });
        published.push({ id: row.id, topic: row.topic, createdMs: row.created_ms });
      } catch (error) {
        if (!(error instanceof EncodeError)) throw error;
        failed.push({ id: row.id, eventId: row.event_id, source: row.source, reason: error.message });
        dlq.push({
          key: row.entity_key,
          value: Buffer.from(
            JSON.stringify({ ...row, payload: JSON.parse(row.payload), lineage: JSON.parse(row.lineage) }),
          ),
          headers: {
            ...headers,
            [DLQ_HEADER.reason]: 'encode_failed',
            [DLQ_HEADER.errorClass]: error.name,
            [DLQ_HEADER.message]: error.message,
            [DLQ_HEADER.stage]: 'relay',
            [DLQ_HEADER.originalTopic]: row.topic,
            [DLQ_HEADER.failedAt]: new Date().toISOString(),
          },
        });
      }
    }
    if (published.length === 0 && failed.length === 0) return undefined;
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    if (dlq.length > 0) topicMessages.push({ topic: DLQ_TOPIC, messages: dlq });
    const ids = [...published, ...failed].map((r) => r.id);
    return { scope: scope.key, topicMessages, published, failed, ids, nextFloor };
  }

  private async markBatch({ published, failed }: Batch, ackedAt: number): Promise<void> {
    if (published.length > 0) {
      await this.o.pool.query('UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])', [
        published.map((r) => r.id),
      ]);
    }
    if (failed.length > 0) {
      await this.o.pool.query(
        `UPDATE outbox SET failed_at = clock_timestamp(), failure = f.reason
         FROM unnest($1::bigint[], $2::text[]) AS f(id, reason) WHERE outbox.id = f.id`,
        [failed.map((f) => f.id), failed.map((f) => f.reason)],
      );
      this.m.failures.inc({ reason: 'encode' }, failed.length);
      for (const f of failed) this.o.logger.error({ event_id: f.eventId, source: f.source }, f.reason);
    }
    const perTopic = new Map<string, number>();
    for (const row of published) {
      perTopic.set(row.topic, (perTopic.get(row.topic) ?? 0) + 1);
      this.m.latency.observe((ackedAt - row.createdMs) / 1000);
    }
    for (const [topic, count] of perTopic) this.m.published.inc({ topic }, count);
  }

  private async measureBacklog(): Promise<void> {
    const { rows } = await this.o.pool.query<{ backlog: number; oldest: number | null }>(
      `SELECT count(*)::int AS backlog, extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS oldest
       FROM outbox WHERE published_at IS NULL AND failed_at IS NULL`,
    );
    this.m.backlog.set(rows[0]!.backlog);
    this.m.oldestAge.set(rows[0]!.oldest ?? 0);
  }

  /**
   * Dead-lettered rows are few, and the partial index outbox_failed holds just them. Without fresh
   * statistics (a table just filled) the planner scans the whole outbox instead, which cost the
   * relay's commit-to-ack p99 in bench:relay; the index is the only other way, so it is made the way.
   */
  async measureFailed(): Promise<void> {
    const failed = await withTransaction(this.o.pool, async (tx) => {
      await tx.query('SET LOCAL enable_seqscan = off');
      const { rows } = await tx.query<{ n: number }>(
        'SELECT count(*)::int AS n FROM outbox WHERE failed_at IS NOT NULL',
      );
      return rows[0]!.n;
    });
    this.m.failed.set(failed);
  }

  /** Batched deletes keep each transaction short and the outbox bounded. */
  async deletePublished(): Promise<number> {
    let deleted = 0;
    for (;;) {
      const { rowCount } = await this.o.pool.query(
        `DELETE FROM outbox WHERE id IN (
           SELECT id FROM outbox WHERE published_at < clock_timestamp() - $1 * interval '1 millisecond' LIMIT 5000)`,
        [this.o.retentionMs],
      );
      deleted += rowCount ?? 0;
      if ((rowCount ?? 0) < 5000) return deleted;
    }
  }
}
