-- Up Migration

-- One row per file content a drops source has taken in, keyed by its sha256: a file whose bytes were
-- already processed is skipped, whatever its name. records_done moves in the same transaction as the
-- events of each chunk, so a run killed mid-file resumes after the last committed chunk.
CREATE TABLE drop_manifest (
  source        text        NOT NULL,
  sha256        text        NOT NULL,
  -- The name the content had when it was first seen.
  file_name     text        NOT NULL,
  size_bytes    bigint      NOT NULL,
  -- Its modification time then: the event time of records without a time column, on resume too.
  file_mtime    timestamptz NOT NULL,
  format        text        NOT NULL,
  records       integer     NOT NULL,
  records_done  integer     NOT NULL DEFAULT 0,
  started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- Set with the last chunk; NULL while the file is part-way in.
  processed_at  timestamptz,
  PRIMARY KEY (source, sha256),
  CONSTRAINT drop_manifest_progress CHECK (records_done BETWEEN 0 AND records)
);

-- Down Migration
DROP TABLE drop_manifest;
