-- readhub schema, SQLite flavour. Times are unix milliseconds (UTC) in BIGINT columns,
-- flags are 0/1 BIGINTs: the same types decode identically through sqlx's Any driver on
-- both backends. Never edit an applied migration: add a new one.

CREATE TABLE consortia (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE pools (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    consortium_id BIGINT NOT NULL REFERENCES consortia(id),
    name          TEXT NOT NULL,
    kind          TEXT NOT NULL,            -- imaging | ecg
    created_at    BIGINT NOT NULL,
    UNIQUE (consortium_id, name)
);

CREATE TABLE sites (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    name             TEXT NOT NULL UNIQUE,
    consortium_id    BIGINT NOT NULL REFERENCES consortia(id),
    issuer           TEXT NOT NULL,         -- Issuer of Patient ID used when the modality sends none
    charset_fallback TEXT,                  -- e.g. GBK, for modalities that send none or mislabel
    created_at       BIGINT NOT NULL
);

CREATE TABLE site_ae_titles (
    ae_title    TEXT PRIMARY KEY,
    site_id     BIGINT NOT NULL REFERENCES sites(id)
);

CREATE TABLE patients (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    issuer      TEXT NOT NULL,
    patient_id  TEXT NOT NULL,
    name        TEXT,
    birth_date  TEXT,
    sex         TEXT,
    UNIQUE (site_id, issuer, patient_id)
);

-- One row per searchable form of a patient's name: the whole value and each component
-- group (alphabetic, ideographic, phonetic), upper-cased, so `张*` matches `Zhang^San=张^三`.
CREATE TABLE patient_name_terms (
    patient_id  BIGINT NOT NULL REFERENCES patients(id),
    term        TEXT NOT NULL,
    UNIQUE (patient_id, term)
);
CREATE INDEX patient_name_terms_term ON patient_name_terms(term);

CREATE TABLE studies (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id             BIGINT NOT NULL REFERENCES sites(id),
    patient_id          BIGINT NOT NULL REFERENCES patients(id),
    study_uid           TEXT NOT NULL,
    study_date          TEXT,
    study_time          TEXT,
    accession_number    TEXT,
    study_id            TEXT,
    study_description   TEXT,
    referring_physician TEXT,
    requested_priority  TEXT,
    modalities          TEXT NOT NULL DEFAULT '',   -- backslash-separated, sorted
    sop_classes         TEXT NOT NULL DEFAULT '',   -- backslash-separated, sorted
    num_series          BIGINT NOT NULL DEFAULT 0,
    num_instances       BIGINT NOT NULL DEFAULT 0,
    first_received_at   BIGINT NOT NULL,
    last_received_at    BIGINT NOT NULL,
    UNIQUE (site_id, study_uid)
);
CREATE INDEX studies_uid ON studies(study_uid);
CREATE INDEX studies_date ON studies(study_date);

CREATE TABLE series (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id           BIGINT NOT NULL REFERENCES studies(id),
    series_uid         TEXT NOT NULL,
    modality           TEXT,
    series_number      TEXT,
    series_description TEXT,
    body_part          TEXT,
    num_instances      BIGINT NOT NULL DEFAULT 0,
    UNIQUE (study_id, series_uid)
);

CREATE TABLE instances (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    series_id           BIGINT NOT NULL REFERENCES series(id),
    study_id            BIGINT NOT NULL REFERENCES studies(id),
    site_id             BIGINT NOT NULL REFERENCES sites(id),
    sop_instance_uid    TEXT NOT NULL,
    sop_class_uid       TEXT NOT NULL,
    version             BIGINT NOT NULL,
    is_current          BIGINT NOT NULL,
    instance_number     TEXT,
    transfer_syntax_uid TEXT NOT NULL,
    rows_               BIGINT,
    columns_            BIGINT,
    number_of_frames    BIGINT,
    blob_key            TEXT NOT NULL,
    size_bytes          BIGINT NOT NULL,
    sha256              TEXT NOT NULL,
    received_at         BIGINT NOT NULL,
    source              TEXT NOT NULL,        -- e.g. "dimse:MODALITY1" or "stow:user"
    UNIQUE (site_id, sop_instance_uid, version)
);
CREATE INDEX instances_series ON instances(series_id);
CREATE INDEX instances_study ON instances(study_id);
CREATE INDEX instances_sop ON instances(sop_instance_uid);

-- Every ingest decision that is not a plain first store: duplicates and new versions.
CREATE TABLE ingest_audit (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id          BIGINT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    decision         TEXT NOT NULL,           -- duplicate | new_version
    version          BIGINT NOT NULL,
    sha256           TEXT NOT NULL,
    source           TEXT NOT NULL,
    at               BIGINT NOT NULL
);

-- Workflow tables (owned by crates/worklist, migrated here so one migrator serves the database).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,              -- admin | technician | reader | referrer
    site_id       BIGINT REFERENCES sites(id),
    pool_id       BIGINT REFERENCES pools(id),
    password_hash TEXT NOT NULL,
    disabled      BIGINT NOT NULL DEFAULT 0,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    token_hash  TEXT PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE worklist_items (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    study_id                 BIGINT NOT NULL UNIQUE REFERENCES studies(id),
    site_id                  BIGINT NOT NULL REFERENCES sites(id),
    pool_id                  BIGINT NOT NULL REFERENCES pools(id),
    priority                 BIGINT NOT NULL,   -- 0 STAT, 1 urgent, 2 routine
    state                    TEXT NOT NULL,     -- receiving | ready | claimed | reported
    routed_by                TEXT NOT NULL,
    open_associations        BIGINT NOT NULL DEFAULT 0,
    last_instance_at         BIGINT NOT NULL,
    ready_at                 BIGINT,
    claimed_by               BIGINT REFERENCES users(id),
    claimed_at               BIGINT,
    new_images_after_report  BIGINT NOT NULL DEFAULT 0,
    created_at               BIGINT NOT NULL,
    updated_at               BIGINT NOT NULL
);
CREATE INDEX worklist_items_queue ON worklist_items(pool_id, state, priority, created_at);

CREATE TABLE reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id     BIGINT NOT NULL REFERENCES worklist_items(id),
    study_id    BIGINT NOT NULL REFERENCES studies(id),
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    version     BIGINT NOT NULL,
    status      TEXT NOT NULL,                -- draft | final
    findings    TEXT NOT NULL,
    impression  TEXT NOT NULL,
    author_id   BIGINT NOT NULL REFERENCES users(id),
    signer_id   BIGINT REFERENCES users(id),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    signed_at   BIGINT,
    UNIQUE (item_id, version)
);
CREATE INDEX reports_site ON reports(site_id, status);

CREATE TABLE item_events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    item_id   BIGINT NOT NULL REFERENCES worklist_items(id),
    kind      TEXT NOT NULL,
    actor_id  BIGINT,
    at        BIGINT NOT NULL,
    detail    TEXT NOT NULL DEFAULT ''
);
CREATE INDEX item_events_item ON item_events(item_id);
