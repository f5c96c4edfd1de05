-- Listing threads without reading their states: what a list item shows is kept beside the state
-- by every checkpoint write (the number of turns, the thread's first prompt, the oldest pending
-- question), and two indexes give the newest first, with or without a status filter.
ALTER TABLE threads ADD COLUMN turns INTEGER NOT NULL DEFAULT 1;
ALTER TABLE threads ADD COLUMN prompt TEXT NOT NULL DEFAULT '';
ALTER TABLE threads ADD COLUMN question TEXT;

UPDATE threads SET
    turns = COALESCE(json_array_length(state, '$.history'), 0) + 1,
    prompt = COALESCE(json_extract(state, '$.history[0].prompt'), json_extract(state, '$.prompt'), ''),
    question = json_extract(state, '$.pending_questions[0].text');

CREATE INDEX IF NOT EXISTS threads_recent ON threads (updated_at, thread_id);
CREATE INDEX IF NOT EXISTS threads_status_recent ON threads (status, updated_at, thread_id);

-- Deleting a thread deletes its history in the same statement.
CREATE TRIGGER IF NOT EXISTS threads_forget AFTER DELETE ON threads
BEGIN
    DELETE FROM checkpoints WHERE thread_id = OLD.thread_id;
END;
