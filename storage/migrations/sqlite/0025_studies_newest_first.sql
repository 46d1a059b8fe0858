-- PostgreSQL gets an index on studies(study_date, id) here for newest-first QIDO pages.
-- SQLite needs none: every SQLite index ends in the rowid, which is studies.id, so the
-- index on study_date already gives (study_date, id) order. Kept so both backends count
-- the same migrations.
SELECT 1;
