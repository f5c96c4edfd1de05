-- Each write of a card sets a new random revision (NULL for rows written before: unknown,
-- always reloaded), so a directory restored from a snapshot knows which cards changed since.
ALTER TABLE agents ADD COLUMN IF NOT EXISTS revision BIGINT;

-- The directory's persisted snapshot, shared by every process on this database, in parts of a
-- few MB (each written in its own statement), and a one-row head naming the complete one.
CREATE TABLE IF NOT EXISTS directory_snapshot_parts (
    snapshot_id BIGINT NOT NULL,
    part        BIGINT NOT NULL,
    bytes       BYTEA NOT NULL,
    PRIMARY KEY (snapshot_id, part)
);

CREATE TABLE IF NOT EXISTS directory_snapshot (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    snapshot_id BIGINT NOT NULL,
    format      BIGINT NOT NULL,
    parts       BIGINT NOT NULL,
    written_at  BIGINT NOT NULL
);
