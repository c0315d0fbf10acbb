-- Invariant 6, "Nothing lost silently": every path the gate or promotion takes off the standby,
-- with why and where it went (a quarantine dir, or purged).
CREATE TABLE removals (
  id            INTEGER PRIMARY KEY,
  path          TEXT    NOT NULL,
  kind          TEXT    NOT NULL CHECK (kind IN ('file', 'dir', 'symlink')),
  reason        TEXT    NOT NULL,
  removed_at    INTEGER NOT NULL,
  snapshot_time INTEGER,
  quarantine    TEXT,
  restored_at   INTEGER
) STRICT;

CREATE INDEX removals_quarantine ON removals (quarantine) WHERE quarantine IS NOT NULL;
