-- An instance whose Study, Series or SOP Instance UID already belongs to another site is
-- refused; the refusal travels to the worklist as an arrival with its details (JSON), so
-- the admins are alerted. The series UID lookup across sites needs its own index.
ALTER TABLE arrivals ADD COLUMN detail TEXT;
CREATE INDEX series_uid ON series(series_uid);
