-- Readers' qualifications and duty: the modalities they read (backslash-separated; empty
-- reads all) and their daily duty hours in local time ("8-17", may wrap: "20-8"; empty is
-- always on duty). A pool may push its work to the least-loaded on-duty qualified reader.
ALTER TABLE users ADD COLUMN modalities TEXT NOT NULL DEFAULT '';
ALTER TABLE users ADD COLUMN duty_hours TEXT NOT NULL DEFAULT '';
ALTER TABLE pools ADD COLUMN auto_assign BIGINT NOT NULL DEFAULT 0;
