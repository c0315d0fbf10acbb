-- Issue 18: what rsync -a keeps. Owners (the source's ids and names; NULL when not known: rows
-- recorded before this version, whose owner the next agent run sends as a metadata update) and
-- special files (kind 'special': FIFOs, sockets, device nodes; target holds the node, e.g. 'fifo'
-- or 'char 1:3'). SQLite cannot change a CHECK constraint in place, so both tables are rebuilt.
CREATE TABLE entries_new (
  path        TEXT    PRIMARY KEY,
  kind        TEXT    NOT NULL CHECK (kind IN ('file', 'dir', 'symlink', 'special')),
  size        INTEGER NOT NULL CHECK (size >= 0),
  mtime_ms    INTEGER NOT NULL,
  mode        INTEGER NOT NULL CHECK (mode BETWEEN 0 AND 4095),
  hash        TEXT,
  target      TEXT,
  born_ms     INTEGER NOT NULL,
  deleted_at  INTEGER,
  damaged     INTEGER NOT NULL DEFAULT 0 CHECK (damaged IN (0, 1)),
  recorded_at INTEGER NOT NULL,
  uid         INTEGER CHECK (uid BETWEEN 0 AND 4294967294),
  gid         INTEGER CHECK (gid BETWEEN 0 AND 4294967294),
  user_name   TEXT,
  group_name  TEXT,
  CHECK ((uid IS NULL) = (gid IS NULL))
) STRICT, WITHOUT ROWID;

INSERT INTO entries_new (path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged, recorded_at)
  SELECT path, kind, size, mtime_ms, mode, hash, target, born_ms, deleted_at, damaged, recorded_at FROM entries;
DROP TABLE entries;
ALTER TABLE entries_new RENAME TO entries;
CREATE INDEX entries_tombstones ON entries (deleted_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE removals_new (
  id            INTEGER PRIMARY KEY,
  path          TEXT    NOT NULL,
  kind          TEXT    NOT NULL CHECK (kind IN ('file', 'dir', 'symlink', 'special')),
  reason        TEXT    NOT NULL,
  removed_at    INTEGER NOT NULL,
  snapshot_time INTEGER,
  quarantine    TEXT,
  restored_at   INTEGER
) STRICT;

INSERT INTO removals_new SELECT id, path, kind, reason, removed_at, snapshot_time, quarantine, restored_at FROM removals;
DROP TABLE removals;
ALTER TABLE removals_new RENAME TO removals;
CREATE INDEX removals_quarantine ON removals (quarantine) WHERE quarantine IS NOT NULL;
