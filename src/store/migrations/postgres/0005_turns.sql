-- The turn log: a thread's earlier turns, one row each, appended once and never rewritten, so the
-- head state carries only their count and stays the same size however long the thread is.
CREATE TABLE IF NOT EXISTS turns (
    thread_id   TEXT NOT NULL,
    turn        BIGINT NOT NULL,
    body        TEXT NOT NULL,
    opened_by   TEXT,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (thread_id, turn)
);

-- A caller resending an A2A message finds the turn it opened without reading the thread's turns.
CREATE INDEX IF NOT EXISTS turns_opened_by ON turns (thread_id, opened_by) WHERE opened_by IS NOT NULL;

-- What a checkpoint write adds to the log, in the same statement: the turns it closes (a JSON
-- array, usually NULL; the first at position turns - 1 - their number), and on a fork's first
-- write the thread whose earlier turns it starts with.
ALTER TABLE threads ADD COLUMN IF NOT EXISTS closed_turns TEXT;
ALTER TABLE threads ADD COLUMN IF NOT EXISTS turns_from TEXT;

CREATE OR REPLACE FUNCTION baton_log_turns() RETURNS trigger AS $$
DECLARE
    first_closed BIGINT := NEW.turns - 1 - COALESCE(json_array_length(NEW.closed_turns::json), 0);
BEGIN
    IF TG_OP = 'INSERT' AND NEW.turns_from IS NOT NULL THEN
        INSERT INTO turns (thread_id, turn, body, opened_by, created_at)
        SELECT NEW.thread_id, turn, body, opened_by, created_at FROM turns
        WHERE thread_id = NEW.turns_from AND turn < first_closed
        ON CONFLICT DO NOTHING;
    END IF;
    IF NEW.closed_turns IS NOT NULL THEN
        INSERT INTO turns (thread_id, turn, body, opened_by, created_at)
        SELECT NEW.thread_id, first_closed + closed.position - 1, closed.body::text,
               closed.body->>'opened_by', NEW.updated_at
        FROM json_array_elements(NEW.closed_turns::json) WITH ORDINALITY AS closed(body, position)
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER threads_turns AFTER INSERT OR UPDATE OF version ON threads
    FOR EACH ROW WHEN (NEW.closed_turns IS NOT NULL OR NEW.turns_from IS NOT NULL)
    EXECUTE FUNCTION baton_log_turns();

-- Deleting a thread deletes its turns in the same statement, as it does its history.
CREATE OR REPLACE FUNCTION baton_forget_turns() RETURNS trigger AS $$
BEGIN
    DELETE FROM turns WHERE thread_id = OLD.thread_id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER threads_forget_turns AFTER DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION baton_forget_turns();
