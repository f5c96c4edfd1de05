-- Thread ownership: the API key's owner that created the thread (NULL: made with authentication
-- off). Written on insert only; the index gives a user key's list, newest first, as a range.
ALTER TABLE threads ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS threads_owner_recent ON threads (owner, updated_at, thread_id);
