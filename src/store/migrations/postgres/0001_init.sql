-- Threads: the head (latest checkpoint) of each thread, stored whole. Every write is a
-- compare-and-set on `version`; `undo` is what turns this state back into the previous one.
-- The state is TEXT, not JSONB: it is written on every node and never queried inside.
CREATE TABLE IF NOT EXISTS threads (
    thread_id         TEXT PRIMARY KEY,
    version           BIGINT NOT NULL,
    step              BIGINT NOT NULL,
    node              TEXT NOT NULL,
    next_node         TEXT NOT NULL,
    status            TEXT NOT NULL,
    state             TEXT NOT NULL,
    undo              TEXT,
    writer            TEXT NOT NULL,
    lease_owner       TEXT,
    lease_expires_at  BIGINT NOT NULL DEFAULT 0,
    retention         BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_runs ON threads (status, lease_expires_at);

-- History: one row per checkpoint, holding the undo from that version to the one before.
CREATE TABLE IF NOT EXISTS checkpoints (
    thread_id   TEXT NOT NULL,
    version     BIGINT NOT NULL,
    step        BIGINT NOT NULL,
    node        TEXT NOT NULL,
    next_node   TEXT NOT NULL,
    status      TEXT NOT NULL,
    undo        TEXT,
    writer      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (thread_id, version)
);

-- Every checkpoint write: keep it in the history, prune the history, and tell every process
-- (LISTEN baton_events) once the transaction commits.
CREATE OR REPLACE FUNCTION baton_record_checkpoint() RETURNS trigger AS $$
BEGIN
    INSERT INTO checkpoints (thread_id, version, step, node, next_node, status, undo, writer, created_at)
    VALUES (NEW.thread_id, NEW.version, NEW.step, NEW.node, NEW.next_node, NEW.status, NEW.undo, NEW.writer, NEW.updated_at);
    IF NEW.retention > 0 THEN
        DELETE FROM checkpoints WHERE thread_id = NEW.thread_id AND version <= NEW.version - NEW.retention;
    END IF;
    PERFORM pg_notify('baton_events', json_build_object(
        'thread_id', NEW.thread_id, 'node', NEW.node, 'status', NEW.status, 'next', NEW.next_node,
        'step', NEW.step, 'version', NEW.version, 'writer', NEW.writer)::text);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER threads_history AFTER INSERT OR UPDATE OF version ON threads
    FOR EACH ROW EXECUTE FUNCTION baton_record_checkpoint();

-- The agent directory: one A2A-style card per row, as JSON.
CREATE TABLE IF NOT EXISTS agents (
    id          TEXT PRIMARY KEY,
    card        TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);
