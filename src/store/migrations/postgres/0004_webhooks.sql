-- The webhook outbox (numbered 4 so that it keeps clear of another branch's migration 3).
-- A delivery is enqueued by the database itself, in the statement that writes the checkpoint
-- which paused or ended a run of a thread that has a webhook (`webhook` in its state), so no
-- crash can fall between the two. `body` is filled by the first attempt (every retry sends the
-- same bytes); `claimed_by`/`claim_expires_at` keep two processes off one delivery.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id       TEXT PRIMARY KEY,
    thread_id         TEXT NOT NULL,
    version           BIGINT NOT NULL,
    event             TEXT NOT NULL,
    url               TEXT NOT NULL,
    body              TEXT,
    state             TEXT NOT NULL,
    attempts          BIGINT NOT NULL DEFAULT 0,
    next_attempt_at   BIGINT NOT NULL,
    claimed_by        TEXT,
    claim_expires_at  BIGINT NOT NULL DEFAULT 0,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS webhook_deliveries_thread ON webhook_deliveries (thread_id, version);

-- Every attempt: its number, what the receiver said (or why it could not), what came of it.
CREATE TABLE IF NOT EXISTS webhook_attempts (
    delivery_id      TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT NOT NULL,
    status_code      BIGINT,
    error            TEXT,
    outcome          TEXT NOT NULL,
    next_attempt_at  BIGINT,
    writer           TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- A checkpoint that pauses for input or ends the run enqueues one delivery, named after its
-- status; the trigger's WHEN keeps every other checkpoint from having its state parsed.
CREATE OR REPLACE FUNCTION baton_enqueue_webhook() RETURNS trigger AS $$
DECLARE
    target TEXT := NEW.state::json ->> 'webhook';
BEGIN
    IF target IS NOT NULL THEN
        INSERT INTO webhook_deliveries (delivery_id, thread_id, version, event, url, state,
                                        next_attempt_at, created_at, updated_at)
        VALUES (replace(gen_random_uuid()::text, '-', ''), NEW.thread_id, NEW.version,
                CASE NEW.status WHEN 'pending_user_input' THEN 'paused' WHEN 'error' THEN 'failed'
                                ELSE NEW.status END,
                target, 'pending', NEW.updated_at, NEW.updated_at, NEW.updated_at);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER threads_webhook AFTER INSERT OR UPDATE OF version ON threads
    FOR EACH ROW
    WHEN ((NEW.status = 'pending_user_input' AND NEW.next_node = 'wait_for_user_input')
          OR (NEW.status IN ('completed', 'error', 'cancelled') AND NEW.next_node = 'end'))
    EXECUTE FUNCTION baton_enqueue_webhook();

-- A thread deleted goes with its deliveries and their attempts.
CREATE OR REPLACE FUNCTION baton_forget_webhooks() RETURNS trigger AS $$
BEGIN
    DELETE FROM webhook_attempts WHERE delivery_id IN
        (SELECT delivery_id FROM webhook_deliveries WHERE thread_id = OLD.thread_id);
    DELETE FROM webhook_deliveries WHERE thread_id = OLD.thread_id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER threads_webhook_delete AFTER DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION baton_forget_webhooks();
