-- Up Migration

-- Relays that are alive, so each can take a fair share of the shards (ceil(shards / live relays)).
CREATE TABLE relay_instances (
  owner         text PRIMARY KEY,
  heartbeat_at  timestamptz NOT NULL
);

-- Wake relays the moment outbox rows commit (NOTIFY is delivered at commit); they also poll as a fallback.
CREATE FUNCTION conveyor_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('conveyor_outbox', '');
  RETURN NULL;
END;
$$;

CREATE TRIGGER outbox_notify
  AFTER INSERT ON outbox
  FOR EACH STATEMENT EXECUTE FUNCTION conveyor_outbox_notify();

-- The relay reads the pending rows of all the shards it holds in id order.
CREATE INDEX outbox_pending_id ON outbox (id) WHERE published_at IS NULL AND failed_at IS NULL;

-- Down Migration
DROP INDEX outbox_pending_id;
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION conveyor_outbox_notify();
DROP TABLE relay_instances;
