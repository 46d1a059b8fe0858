-- A study its sender declared complete (a Storage Commitment request whose every instance
-- is held): it waits out no quiet period. New instances for it clear the mark.
ALTER TABLE worklist_items ADD COLUMN complete_at BIGINT;
