-- A group commit writes many checkpoints in one statement; the row triggers of 0001 (history,
-- its pruning, NOTIFY) and 0004 (webhook outbox) ran once per row, each its own INSERT, DELETE
-- and pg_notify. These statement-level triggers do the same once per statement over all the rows
-- it wrote (the transition tables), and announce them in as few notifications as fit: a JSON
-- array of the rows' metadata each, under PostgreSQL's 8000-byte payload limit.
--
-- Kept as they were: the turn log's row trigger (0005, only for the rare rows with turns to log)
-- and every delete trigger (0003, 0004, 0005). A trigger with transition tables serves one event,
-- and an UPDATE one cannot name columns: the INSERT trigger takes every row, the UPDATE trigger
-- the rows whose version moved (what `UPDATE OF version` fired on; a lease renewal moves none).

-- What the history, the outbox and the announcement need of a written checkpoint: its row less
-- the state, whose webhook is read only for a checkpoint that pauses for input or ends the run.
-- Carrying the states (kilobytes each) through arrays would cost more than the work itself.
CREATE TYPE baton_written AS (
    thread_id   TEXT,
    version     BIGINT,
    step        BIGINT,
    node        TEXT,
    next_node   TEXT,
    status      TEXT,
    undo        TEXT,
    writer      TEXT,
    retention   BIGINT,
    updated_at  BIGINT,
    webhook     TEXT
);

-- The checkpoints one statement wrote: history, pruning, webhook deliveries, announcement.
CREATE OR REPLACE FUNCTION baton_record_checkpoints(written baton_written[]) RETURNS void AS $$
DECLARE
    pruned RECORD;
    event TEXT;
    batch TEXT := '';
BEGIN
    INSERT INTO checkpoints (thread_id, version, step, node, next_node, status, undo, writer,
                             created_at)
    SELECT w.thread_id, w.version, w.step, w.node, w.next_node, w.status, w.undo, w.writer,
           w.updated_at
    FROM unnest(written) AS w;

    -- Pruned thread by thread, each a range of the primary key: one DELETE joined to the array
    -- keeps the plan it got while the table was small (a sequential scan), however big it grows.
    -- A thread with fewer versions than it keeps has nothing to prune.
    FOR pruned IN
        SELECT w.thread_id, w.version - w.retention AS up_to FROM unnest(written) AS w
        WHERE w.retention > 0 AND w.version > w.retention
    LOOP
        DELETE FROM checkpoints
        WHERE thread_id = pruned.thread_id AND version <= pruned.up_to;
    END LOOP;

    -- One delivery per checkpoint with a webhook (only those that pause or end carry one here),
    -- named after its status.
    INSERT INTO webhook_deliveries (delivery_id, thread_id, version, event, url, state,
                                    next_attempt_at, created_at, updated_at)
    SELECT replace(gen_random_uuid()::text, '-', ''), w.thread_id, w.version,
           CASE w.status WHEN 'pending_user_input' THEN 'paused' WHEN 'error' THEN 'failed'
                         ELSE w.status END,
           w.webhook, 'pending', w.updated_at, w.updated_at, w.updated_at
    FROM unnest(written) AS w
    WHERE w.webhook IS NOT NULL;

    -- Every process (LISTEN baton_events) hears of them once the transaction commits: as few
    -- notifications as fit under the payload limit, each a JSON array.
    FOR event IN
        SELECT json_build_object(
                   'thread_id', w.thread_id, 'node', w.node, 'status', w.status,
                   'next', w.next_node, 'step', w.step, 'version', w.version,
                   'writer', w.writer)::text
        FROM unnest(written) AS w
    LOOP
        IF batch <> '' AND octet_length(batch) + octet_length(event) + 2 > 7900 THEN
            PERFORM pg_notify('baton_events', '[' || batch || ']');
            batch := '';
        END IF;
        batch := CASE WHEN batch = '' THEN event ELSE batch || ',' || event END;
    END LOOP;
    IF batch <> '' THEN
        PERFORM pg_notify('baton_events', '[' || batch || ']');
    END IF;
END
$$ LANGUAGE plpgsql;

-- A written row as `baton_written`: the state parsed for its webhook only when the checkpoint
-- pauses for input or ends the run (what 0004's trigger condition was).
CREATE OR REPLACE FUNCTION baton_written_of(t threads) RETURNS baton_written AS $$
    SELECT ROW(t.thread_id, t.version, t.step, t.node, t.next_node, t.status, t.undo, t.writer,
               t.retention, t.updated_at,
               CASE WHEN (t.status = 'pending_user_input' AND t.next_node = 'wait_for_user_input')
                         OR (t.status IN ('completed', 'error', 'cancelled') AND t.next_node = 'end')
                    THEN t.state::json ->> 'webhook' END)::baton_written
$$ LANGUAGE sql IMMUTABLE;

CREATE OR REPLACE FUNCTION baton_record_inserted() RETURNS trigger AS $$
DECLARE
    inserted baton_written[] := ARRAY(SELECT baton_written_of(w) FROM written w);
BEGIN
    -- An upsert fires this trigger even when every row went to ON CONFLICT's update.
    IF cardinality(inserted) > 0 THEN
        PERFORM baton_record_checkpoints(inserted);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION baton_record_updated() RETURNS trigger AS $$
DECLARE
    moved baton_written[] := ARRAY(SELECT baton_written_of(w) FROM written w
                                   JOIN replaced r USING (thread_id)
                                   WHERE w.version <> r.version);
BEGIN
    IF cardinality(moved) > 0 THEN
        PERFORM baton_record_checkpoints(moved);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS threads_history ON threads;
DROP TRIGGER IF EXISTS threads_webhook ON threads;

CREATE OR REPLACE TRIGGER threads_history_inserted AFTER INSERT ON threads
    REFERENCING NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION baton_record_inserted();

CREATE OR REPLACE TRIGGER threads_history_updated AFTER UPDATE ON threads
    REFERENCING OLD TABLE AS replaced NEW TABLE AS written
    FOR EACH STATEMENT EXECUTE FUNCTION baton_record_updated();

DROP FUNCTION IF EXISTS baton_record_checkpoint();
DROP FUNCTION IF EXISTS baton_enqueue_webhook();

-- Every checkpoint write stores a state of a few kilobytes, which TOAST compresses: with pglz that
-- was an eighth of the writer's backend CPU. lz4 (PostgreSQL 14+, where the server was built with
-- it) compresses several times faster; values written before stay pglz and read as they are.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE threads ALTER COLUMN state SET COMPRESSION lz4;
    END IF;
END
$$;
