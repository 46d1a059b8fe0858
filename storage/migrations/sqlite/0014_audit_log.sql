-- Who read or changed which patient's data, when, from where, and with what outcome
-- (issue 12: QIDO, WADO, reports, waveforms, worklist items, sign-offs, critical results,
-- STOW, C-STORE associations, logins, user and site changes). Written by the audit crate,
-- read by admins only. Append-only for everyone, admins and the hub itself included: the
-- triggers refuse every UPDATE and DELETE.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             BIGINT NOT NULL,          -- ms since the epoch
    username       TEXT,                     -- the signed-in user, or the name a failed login tried
    role           TEXT,
    site           TEXT,                     -- the user's site (technician, referrer), or the sending site
    pool           TEXT,                     -- the reader's pool
    client         TEXT,                     -- client address (HTTP peer, DICOM peer)
    action         TEXT NOT NULL,
    outcome        TEXT NOT NULL,            -- success | denied | failed
    study_uid      TEXT,
    patient_id     TEXT,
    patient_issuer TEXT,
    detail         TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_user ON audit_log(username, id);
CREATE INDEX audit_log_patient ON audit_log(patient_id, id);
CREATE INDEX audit_log_study ON audit_log(study_uid, id);
CREATE INDEX audit_log_action ON audit_log(action, id);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit log is append-only');
END;
