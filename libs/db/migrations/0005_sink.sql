-- Up Migration

-- The sink's dedupe state: which Kafka record (topic, partition, offset) first carried each event.
-- That record is the event's one occurrence in the output; a record with the same event id at any
-- other position is a duplicate (relay re-publication, DLQ replay). Replaying the claimed record
-- itself (after a crash, or from offset 0) finds its own claim and is written again, to the same file.
CREATE TABLE sink_claims (
  source            text        NOT NULL,
  event_id          text        NOT NULL,
  topic             text        NOT NULL,
  kafka_partition   integer     NOT NULL,
  kafka_offset      bigint      NOT NULL,
  claimed_at        timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT sink_claims_pkey PRIMARY KEY (source, event_id)
);

-- Retention deletes claims older than SINK_DEDUPE_RETENTION_DAYS, oldest first.
CREATE INDEX sink_claims_claimed_at ON sink_claims (claimed_at);

-- Down Migration
DROP TABLE sink_claims;
