-- Threads: the latest checkpoint of each thread. Every write is a compare-and-set on `version`.
CREATE TABLE IF NOT EXISTS threads (
    thread_id   TEXT PRIMARY KEY NOT NULL,
    version     INTEGER NOT NULL,
    step        INTEGER NOT NULL,
    next_node   TEXT NOT NULL,
    status      TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_status ON threads (status);

-- The agent directory: one A2A-style card per row, as JSON.
CREATE TABLE IF NOT EXISTS agents (
    id          TEXT PRIMARY KEY NOT NULL,
    card        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);
