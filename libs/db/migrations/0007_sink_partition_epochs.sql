-- Up Migration

-- Fencing for the sink: every time a sink is given a topic-partition (a group join) it takes the next
-- epoch of that partition. A sink writes a partition's files and commits its offsets only while holding
-- the partition's advisory lock and only if the epoch there is still its own. So a sink that stalled
-- past its session (a "zombie") and wakes up with a batch in hand finds a newer epoch and writes
-- nothing over the files of the sink that took the partition over.
CREATE TABLE sink_partition_epochs (
  topic           text        NOT NULL,
  kafka_partition integer     NOT NULL,
  epoch           bigint      NOT NULL,
  taken_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sink_partition_epochs_pkey PRIMARY KEY (topic, kafka_partition)
);

-- Down Migration
DROP TABLE sink_partition_epochs;
