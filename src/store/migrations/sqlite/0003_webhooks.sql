-- The webhook outbox (numbered 3 so that it keeps clear of another branch's migration 2).
-- A delivery is enqueued by the database itself, in the statement that writes the checkpoint
-- which paused or ended a run of a thread that has a webhook (`$.webhook` in its state), so no
-- crash can fall between the two. `body` is filled by the first attempt (every retry sends the
-- same bytes); `claimed_by`/`claim_expires_at` keep two deliverers off one delivery.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id       TEXT PRIMARY KEY NOT NULL,
    thread_id         TEXT NOT NULL,
    version           INTEGER NOT NULL,
    event             TEXT NOT NULL,
    url               TEXT NOT NULL,
    body              TEXT,
    state             TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    next_attempt_at   INTEGER NOT NULL,
    claimed_by        TEXT,
    claim_expires_at  INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_thread ON webhook_deliveries (thread_id, version);

-- Every attempt: its number, what the receiver said (or why it could not), what came of it.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id      TEXT NOT NULL,
    attempt          INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER NOT NULL,
    status_code      INTEGER,
    error            TEXT,
    outcome          TEXT NOT NULL,
    next_attempt_at  INTEGER,
    writer           TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;

-- A checkpoint that pauses for input or ends the run (the statuses and next nodes the engine
-- writes then) enqueues one delivery, named after the status. The status test comes first so
-- that only those checkpoints have their state read.
CREATE TRIGGER IF NOT EXISTS threads_webhook_insert AFTER INSERT ON threads
WHEN ((NEW.status = 'pending_user_input' AND NEW.next_node = 'wait_for_user_input')
      OR (NEW.status IN ('completed', 'error', 'cancelled') AND NEW.next_node = 'end'))
     AND json_extract(NEW.state, '$.webhook') IS NOT NULL
BEGIN
    INSERT INTO webhook_deliveries (delivery_id, thread_id, version, event, url, state,
                                    next_attempt_at, created_at, updated_at)
    VALUES (lower(hex(randomblob(16))), NEW.thread_id, NEW.version,
            CASE NEW.status WHEN 'pending_user_input' THEN 'paused' WHEN 'error' THEN 'failed'
                            ELSE NEW.status END,
            json_extract(NEW.state, '$.webhook'), 'pending', NEW.updated_at, NEW.updated_at,
            NEW.updated_at);
END;

CREATE TRIGGER IF NOT EXISTS threads_webhook_update AFTER UPDATE OF version ON threads
WHEN ((NEW.status = 'pending_user_input' AND NEW.next_node = 'wait_for_user_input')
      OR (NEW.status IN ('completed', 'error', 'cancelled') AND NEW.next_node = 'end'))
     AND json_extract(NEW.state, '$.webhook') IS NOT NULL
BEGIN
    INSERT INTO webhook_deliveries (delivery_id, thread_id, version, event, url, state,
                                    next_attempt_at, created_at, updated_at)
    VALUES (lower(hex(randomblob(16))), NEW.thread_id, NEW.version,
            CASE NEW.status WHEN 'pending_user_input' THEN 'paused' WHEN 'error' THEN 'failed'
                            ELSE NEW.status END,
            json_extract(NEW.state, '$.webhook'), 'pending', NEW.updated_at, NEW.updated_at,
            NEW.updated_at);
END;

-- A thread deleted goes with its deliveries and their attempts.
CREATE TRIGGER IF NOT EXISTS threads_webhook_delete AFTER DELETE ON threads
BEGIN
    DELETE FROM webhook_attempts WHERE delivery_id IN
        (SELECT delivery_id FROM webhook_deliveries WHERE thread_id = OLD.thread_id);
    DELETE FROM webhook_deliveries WHERE thread_id = OLD.thread_id;
END;
