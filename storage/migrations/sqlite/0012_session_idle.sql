-- Login sessions also end after a while without use (idle), not only at their absolute end.
ALTER TABLE sessions ADD COLUMN last_seen_at BIGINT;
