import { arrayLiteral, type Pool, withTransaction } from '../../libs/db/index.ts';

/**
 * Partition fencing (table sink_partition_epochs, migration 0007). A sink takes a new epoch for each
 * partition it is given; it writes a partition's files and commits its offsets only under that
 * partition's advisory lock, and only while the epoch there is still its own. A sink that stalled
 * past its session and wakes up holding a batch (a "zombie") then finds a newer epoch and stops, and
 * the sink that took the partition over waits for a zombie already past the check to finish, then
 * replaces what it wrote (its files are in the offsets the new owner rewrites).
 */
export class StaleOwnerError extends Error {
  constructor(topic: string, partition: number, mine: string, current: string | undefined) {
    super(`${topic}[${partition}] belongs to a newer holder (epoch ${current ?? 'none'}, this sink's ${mine})`);
    this.name = 'StaleOwnerError';
  }
}

export const partitionKey = (topic: string, partition: number) => `${topic}\u0000${partition}`;

/** Takes the next epoch of every partition in `assignment` (topic → partitions); returns them by partitionKey. */
export async function takeEpochs(pool: Pool, assignment: Record<string, number[]>): Promise<Map<string, string>> {
  const topics: string[] = [];
  const partitions: string[] = [];
  for (const [topic, list] of Object.entries(assignment)) {
    for (const partition of list) {
      topics.push(topic);
      partitions.push(String(partition));
    }
  }
  const epochs = new Map<string, string>();
  if (topics.length === 0) return epochs;
  const { rows } = await pool.query<{ topic: string; kafka_partition: number; epoch: string }>(
    `INSERT INTO sink_partition_epochs (topic, kafka_partition, epoch)
     SELECT topic, kafka_partition, 1 FROM unnest($1::text[], $2::integer[]) AS t(topic, kafka_partition)
     ON CONFLICT (topic, kafka_partition)
       DO UPDATE SET epoch = sink_partition_epochs.epoch + 1, taken_at = now()
     RETURNING topic, kafka_partition, epoch::text`,
    [arrayLiteral(topics), arrayLiteral(partitions)],
  );
  for (const row of rows) epochs.set(partitionKey(row.topic, row.kafka_partition), row.epoch);
  return epochs;
}

const LOCK_RETRY_MS = 200;

/**
 * Runs `work` holding the partition's lock, if `epoch` is still the partition's; otherwise throws
 * StaleOwnerError and runs nothing. While another holder has the lock it waits, calling `waiting`
 * (the consumer's heartbeat) so that waiting does not cost it the partition.
 */
export async function withFence<T>(
  pool: Pool,
  position: { topic: string; partition: number; epoch: string },
  waiting: () => Promise<void>,
  work: () => Promise<T>,
): Promise<T> {
  const { topic, partition, epoch } = position;
  return withTransaction(pool, async (client) => {
    const lock = 'SELECT pg_try_advisory_xact_lock(hashtext($1), $2) AS locked';
    while (!(await client.query<{ locked: boolean }>(lock, [`conveyor.sink:${topic}`, partition])).rows[0]!.locked) {
      await waiting();
      await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
    }
    const { rows } = await client.query<{ epoch: string }>(
      'SELECT epoch::text FROM sink_partition_epochs WHERE topic = $1 AND kafka_partition = $2',
      [topic, partition],
    );
    if (rows[0]?.epoch !== epoch) throw new StaleOwnerError(topic, partition, epoch, rows[0]?.epoch);
    return work();
  });
}
