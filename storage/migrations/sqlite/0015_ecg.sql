-- ECG (issue 13). What readhub measured on each ECG instance and which critical criteria
-- fired: written once per instance by whichever node analyses it first (the primary key),
-- in the same transaction as the suggestions it raises.
CREATE TABLE ecg_analyses (
    instance_id   BIGINT PRIMARY KEY REFERENCES instances(id),
    item_id       BIGINT REFERENCES worklist_items(id),
    analysed_at   BIGINT NOT NULL,
    computed      TEXT,                    -- JSON of the computed measurements, NULL when none could be made
    error         TEXT NOT NULL DEFAULT '' -- why nothing was measured
);
CREATE INDEX ecg_analyses_item ON ecg_analyses (item_id);

-- A suggested critical result (危急值) from a rule: a reader confirms it (it becomes a
-- critical result sent to the site) or dismisses it (kept, with who and why).
CREATE TABLE ecg_critical_suggestions (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id       BIGINT NOT NULL REFERENCES worklist_items(id),
    instance_id   BIGINT NOT NULL REFERENCES instances(id),
    rule          TEXT NOT NULL,
    evidence      TEXT NOT NULL,
    state         TEXT NOT NULL,           -- suggested | confirmed | dismissed
    created_at    BIGINT NOT NULL,
    decided_by    BIGINT REFERENCES users(id),
    decided_at    BIGINT,
    note          TEXT NOT NULL DEFAULT '',
    critical_result_id BIGINT REFERENCES critical_results(id)
);
CREATE INDEX ecg_critical_suggestions_item ON ecg_critical_suggestions (item_id);

-- ECG instances waiting for their analysis: queued by the worklist's arrival consumer in the
-- transaction that applies the arrival, taken off in the one that records the analysis.
CREATE TABLE ecg_pending (
    instance_id   BIGINT PRIMARY KEY REFERENCES instances(id),
    item_id       BIGINT NOT NULL REFERENCES worklist_items(id),
    queued_at     BIGINT NOT NULL
);
-- the ECGs stored before this version: measured once (their items are mostly read already,
-- and a read item gets measurements but no suggestion)
INSERT INTO ecg_pending (instance_id, item_id, queued_at)
SELECT i.id, w.id, 0 FROM instances i JOIN worklist_items w ON w.study_id = i.study_id
WHERE i.is_current = 1 AND i.sop_class_uid IN ('1.2.840.10008.5.1.4.1.1.9.1.1', '1.2.840.10008.5.1.4.1.1.9.1.2', '1.2.840.10008.5.1.4.1.1.9.1.3', '1.2.840.10008.5.1.4.1.1.9.1.4');
