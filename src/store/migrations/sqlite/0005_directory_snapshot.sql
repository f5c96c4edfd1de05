-- Each write of a card sets a new random revision (NULL for rows written before: unknown,
-- always reloaded), so a directory restored from a snapshot knows which cards changed since.
ALTER TABLE agents ADD COLUMN revision INTEGER;

-- The directory's persisted snapshot, in parts of a few MB (each written in its own statement),
-- and a one-row head naming the complete one.
CREATE TABLE IF NOT EXISTS directory_snapshot_parts (
    snapshot_id INTEGER NOT NULL,
    part        INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    PRIMARY KEY (snapshot_id, part)
);

CREATE TABLE IF NOT EXISTS directory_snapshot (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot_id INTEGER NOT NULL,
    format      INTEGER NOT NULL,
    parts       INTEGER NOT NULL,
    written_at  INTEGER NOT NULL
);
