-- Threads: the head (latest checkpoint) of each thread, stored whole. Every write is a
-- compare-and-set on `version`; `undo` is what turns this state back into the previous one.
CREATE TABLE IF NOT EXISTS threads (
    thread_id         TEXT PRIMARY KEY NOT NULL,
    version           INTEGER NOT NULL,
    step              INTEGER NOT NULL,
    node              TEXT NOT NULL,
    next_node         TEXT NOT NULL,
    status            TEXT NOT NULL,
    state             TEXT NOT NULL,
    undo              TEXT,
    writer            TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  INTEGER NOT NULL DEFAULT 0,
    retention         INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_runs ON threads (status, lease_expires_at);

-- History: one row per checkpoint, holding the undo from that version to the one before, so a
-- thread stores O(checkpoints) bytes. Kept by the triggers below, bounded by `retention`.
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    node        TEXT NOT NULL,
    next_node   TEXT NOT NULL,
    status      TEXT NOT NULL,
    undo        TEXT,
    writer      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (thread_id, version)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS threads_history_insert AFTER INSERT ON threads
BEGIN
    INSERT INTO checkpoints (thread_id, version, step, node, next_node, status, undo, writer, created_at)
    VALUES (NEW.thread_id, NEW.version, NEW.step, NEW.node, NEW.next_node, NEW.status, NEW.undo, NEW.writer, NEW.updated_at);
END;

CREATE TRIGGER IF NOT EXISTS threads_history_update AFTER UPDATE OF version ON threads
BEGIN
    INSERT INTO checkpoints (thread_id, version, step, node, next_node, status, undo, writer, created_at)
    VALUES (NEW.thread_id, NEW.version, NEW.step, NEW.node, NEW.next_node, NEW.status, NEW.undo, NEW.writer, NEW.updated_at);
    DELETE FROM checkpoints
    WHERE NEW.retention > 0 AND thread_id = NEW.thread_id AND version <= NEW.version - NEW.retention;
END;

-- The agent directory: one A2A-style card per row, as JSON.
CREATE TABLE IF NOT EXISTS agents (
    id          TEXT PRIMARY KEY NOT NULL,
    card        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
