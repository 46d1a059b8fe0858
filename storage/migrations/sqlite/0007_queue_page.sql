-- The queue page reads each open state's leg in index order (worklist_items_next); the
-- reported items that received new images are the one leg the state cannot find, since
-- reported items accumulate for years: they get a partial index of their own.
CREATE INDEX worklist_items_new_images ON worklist_items(pool_id, priority, deadline_at, id) WHERE new_images_after_report = 1;
