-- Up Migration

-- A cursor feed reads its last page again on every run until the feed moves on, so a bad record on it
-- was quarantined again each time (a row per record per run: every 30 s on a 30 s schedule). A record
-- is now quarantined once per source and reason; the first sighting (its URL and time) is kept.
DELETE FROM pull_quarantine later USING pull_quarantine earlier
  WHERE later.source = earlier.source AND later.reason = earlier.reason AND later.record = earlier.record
    AND later.id > earlier.id;
CREATE UNIQUE INDEX pull_quarantine_once ON pull_quarantine (source, reason, md5(record::text));

-- Down Migration
DROP INDEX pull_quarantine_once;
