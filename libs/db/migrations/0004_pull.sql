-- Up Migration

-- Where each pull source resumes. Written in the same transaction as the events it covers.
CREATE TABLE pull_checkpoints (
  source      text        PRIMARY KEY,
  state       jsonb       NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- One run of a source at a time, across processes and machines; the holder renews until done.
CREATE TABLE pull_leases (
  source      text        PRIMARY KEY,
  owner       text        NOT NULL,
  expires_at  timestamptz NOT NULL
);

-- Run history: progress and proof that runs of one source never overlapped.
CREATE TABLE pull_runs (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source       text        NOT NULL,
  owner        text        NOT NULL,
  started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  finished_at  timestamptz,
  status       text        NOT NULL DEFAULT 'running',
  stats        jsonb       NOT NULL DEFAULT '{}'::jsonb,
  error        text
);
CREATE INDEX pull_runs_source ON pull_runs (source, id);

-- Newer-wins: the latest updated_at stored per entity, so an older re-delivery is not kept.
CREATE TABLE pull_entity_versions (
  source      text        NOT NULL,
  entity_key  text        NOT NULL,
  updated_at  timestamptz NOT NULL,
  event_id    text        NOT NULL,
  PRIMARY KEY (source, entity_key)
);

-- Records that could not be ingested (no primary key, unparseable time), with the reason.
CREATE TABLE pull_quarantine (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source       text        NOT NULL,
  url          text        NOT NULL,
  reason       text        NOT NULL,
  record       jsonb       NOT NULL,
  received_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX pull_quarantine_source ON pull_quarantine (source, id);

-- Non-idempotent requests by sha256(method + url + body): one sent is never sent again.
CREATE TABLE http_request_fingerprints (
  fingerprint  text        PRIMARY KEY,
  method       text        NOT NULL,
  url          text        NOT NULL,
  sent_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  status       integer,
  headers      jsonb,
  body         text,
  completed_at timestamptz
);

-- Token buckets shared by every process pacing one source; the database clock is the only clock.
CREATE TABLE rate_buckets (
  name           text             PRIMARY KEY,
  tokens         double precision NOT NULL,
  capacity       double precision NOT NULL,
  rate_per_s     double precision NOT NULL,
  updated_at     timestamptz      NOT NULL,
  blocked_until  timestamptz
);

-- Down Migration
DROP TABLE rate_buckets;
DROP TABLE http_request_fingerprints;
DROP TABLE pull_quarantine;
DROP TABLE pull_entity_versions;
DROP TABLE pull_runs;
DROP TABLE pull_leases;
DROP TABLE pull_checkpoints;
