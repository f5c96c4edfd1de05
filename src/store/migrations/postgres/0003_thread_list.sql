-- Listing threads without reading their states: what a list item shows is kept beside the state
-- by every checkpoint write (the number of turns, the thread's first prompt, the oldest pending
-- question), and two indexes give the newest first, with or without a status filter.
ALTER TABLE threads ADD COLUMN IF NOT EXISTS turns BIGINT NOT NULL DEFAULT 1;
ALTER TABLE threads ADD COLUMN IF NOT EXISTS prompt TEXT NOT NULL DEFAULT '';
ALTER TABLE threads ADD COLUMN IF NOT EXISTS question TEXT;

UPDATE threads SET
    turns = COALESCE(json_array_length((state::json)->'history'), 0) + 1,
    prompt = COALESCE((state::json)->'history'->0->>'prompt', (state::json)->>'prompt', ''),
    question = (state::json)->'pending_questions'->0->>'text';

CREATE INDEX IF NOT EXISTS threads_recent ON threads (updated_at, thread_id);
CREATE INDEX IF NOT EXISTS threads_status_recent ON threads (status, updated_at, thread_id);

-- Deleting a thread deletes its history in the same statement.
CREATE OR REPLACE FUNCTION baton_forget_thread() RETURNS trigger AS $$
BEGIN
    DELETE FROM checkpoints WHERE thread_id = OLD.thread_id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE TRIGGER threads_forget AFTER DELETE ON threads
    FOR EACH ROW EXECUTE FUNCTION baton_forget_thread();
