-- Up Migration

-- `conveyor volume` counts events by source and hour of arrival over the last days. raw_events only
-- grows, in ingested_at order, so a BRIN index finds that range at almost no cost to inserts.
CREATE INDEX raw_events_ingested_at ON raw_events USING brin (ingested_at);

-- Down Migration
DROP INDEX raw_events_ingested_at;
