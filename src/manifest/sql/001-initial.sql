-- The receiver's manifest: one row per path it has recorded under its root.
-- A row with deleted_at set is a tombstone: deleted on the source, still on disk until the gate allows.
CREATE TABLE entries (
  path        TEXT    PRIMARY KEY,
  kind        TEXT    NOT NULL CHECK (kind IN ('file', 'dir', 'symlink')),
  size        INTEGER NOT NULL CHECK (size >= 0),
  mtime_ms    INTEGER NOT NULL,
  mode        INTEGER NOT NULL CHECK (mode BETWEEN 0 AND 4095),
  hash        TEXT,
  target      TEXT,
  born_ms     INTEGER NOT NULL,
  deleted_at  INTEGER,
  damaged     INTEGER NOT NULL DEFAULT 0 CHECK (damaged IN (0, 1)),
  recorded_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX entries_tombstones ON entries (deleted_at) WHERE deleted_at IS NOT NULL;

-- Single values the operator commands read: snapshot time, watermark, last agent contact, ...
CREATE TABLE state (
  key   TEXT PRIMARY KEY,
  value ANY
) STRICT;
