-- Up Migration

-- Every accepted event, exactly once per (source, event_id). Immutable: see the trigger below.
CREATE TABLE raw_events (
  source       text        NOT NULL,
  event_id     text        NOT NULL,
  event_type   text        NOT NULL,
  entity_key   text        NOT NULL,
  event_time   timestamptz NOT NULL,
  ingested_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  payload      jsonb       NOT NULL,
  -- Where the event came from: delivery id, request URL, file name, ... (free-form, per ingestion path).
  lineage      jsonb       NOT NULL DEFAULT '{}'::jsonb,
  CONSTRAINT raw_events_pkey PRIMARY KEY (source, event_id),
  CONSTRAINT raw_events_event_id_not_blank CHECK (length(event_id) > 0),
  CONSTRAINT raw_events_source_not_blank CHECK (length(source) > 0)
);

CREATE FUNCTION conveyor_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'raw_events is immutable: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'raw events are written once; corrections are new events';
END;
$$;

CREATE TRIGGER raw_events_immutable_rows
  BEFORE UPDATE OR DELETE ON raw_events
  FOR EACH ROW EXECUTE FUNCTION conveyor_refuse_change();

CREATE TRIGGER raw_events_immutable_table
  BEFORE TRUNCATE ON raw_events
  FOR EACH STATEMENT EXECUTE FUNCTION conveyor_refuse_change();

-- One row per event due for publication. Rows are spread over a fixed number of shards by a hash of
-- the entity key, so all rows of one key share a shard and a relay that holds the shard's lease
-- publishes them in id order.
CREATE TABLE outbox (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source        text        NOT NULL,
  event_id      text        NOT NULL,
  topic         text        NOT NULL,
  shard         smallint    NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  published_at  timestamptz,
  failed_at     timestamptz,
  failure       text,
  CONSTRAINT outbox_event_fkey FOREIGN KEY (source, event_id) REFERENCES raw_events (source, event_id),
  CONSTRAINT outbox_event_unique UNIQUE (source, event_id)
);

-- What the relay scans: pending rows of a shard, in order. Published rows leave the index.
CREATE INDEX outbox_pending ON outbox (shard, id) WHERE published_at IS NULL AND failed_at IS NULL;
-- What retention scans: published rows by age.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Leases: a relay instance owns a shard until expires_at; it renews while alive.
CREATE TABLE relay_leases (
  shard       smallint    PRIMARY KEY,
  owner       text        NOT NULL,
  expires_at  timestamptz NOT NULL
);

-- Down Migration
DROP TABLE relay_leases;
DROP TABLE outbox;
DROP TRIGGER raw_events_immutable_table ON raw_events;
DROP TRIGGER raw_events_immutable_rows ON raw_events;
DROP TABLE raw_events;
DROP FUNCTION conveyor_refuse_change();
