-- The turn log: a thread's earlier turns, one row each, appended once and never rewritten, so the
-- head state carries only their count and stays the same size however long the thread is.
CREATE TABLE IF NOT EXISTS turns (
    thread_id   TEXT NOT NULL,
    turn        INTEGER NOT NULL,
    body        TEXT NOT NULL,
    opened_by   TEXT,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (thread_id, turn)
) WITHOUT ROWID;

-- A caller resending an A2A message finds the turn it opened without reading the thread's turns.
CREATE INDEX IF NOT EXISTS turns_opened_by ON turns (thread_id, opened_by) WHERE opened_by IS NOT NULL;

-- What a checkpoint write adds to the log, in the same statement: the turns it closes (a JSON
-- array, usually NULL; the first at position turns - 1 - their number), and on a fork's first
-- write the thread whose earlier turns it starts with.
ALTER TABLE threads ADD COLUMN closed_turns TEXT;
ALTER TABLE threads ADD COLUMN turns_from TEXT;

CREATE TRIGGER IF NOT EXISTS threads_turns_insert AFTER INSERT ON threads
WHEN NEW.turns_from IS NOT NULL OR NEW.closed_turns IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO turns (thread_id, turn, body, opened_by, created_at)
    SELECT NEW.thread_id, turn, body, opened_by, created_at FROM turns
    WHERE thread_id = NEW.turns_from
      AND turn < NEW.turns - 1 - COALESCE(json_array_length(NEW.closed_turns), 0);
    INSERT OR IGNORE INTO turns (thread_id, turn, body, opened_by, created_at)
    SELECT NEW.thread_id, NEW.turns - 1 - json_array_length(NEW.closed_turns) + key, value,
           json_extract(value, '$.opened_by'), NEW.updated_at
    FROM json_each(NEW.closed_turns);
END;

CREATE TRIGGER IF NOT EXISTS threads_turns_update AFTER UPDATE OF version ON threads
WHEN NEW.closed_turns IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO turns (thread_id, turn, body, opened_by, created_at)
    SELECT NEW.thread_id, NEW.turns - 1 - json_array_length(NEW.closed_turns) + key, value,
           json_extract(value, '$.opened_by'), NEW.updated_at
    FROM json_each(NEW.closed_turns);
END;

-- Deleting a thread deletes its turns in the same statement, as it does its history.
CREATE TRIGGER IF NOT EXISTS threads_forget_turns AFTER DELETE ON threads
BEGIN
    DELETE FROM turns WHERE thread_id = OLD.thread_id;
END;
