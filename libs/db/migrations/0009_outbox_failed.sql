-- Up Migration

-- Rows the relay dead-lettered (their payload did not fit the contract) stay in the outbox until
-- `conveyor dlq replay` puts them back in line; relays count them for the
-- conveyor_relay_outbox_failed gauge every few seconds, which this keeps off the table's heap.
CREATE INDEX outbox_failed ON outbox (source) WHERE failed_at IS NOT NULL;

-- Down Migration
DROP INDEX outbox_failed;
