-- Orders (检查申请, issue 14): what a site's HIS (HL7 v2, FHIR) or its technician (登记)
-- asks the hub to do. The modality worklist is answered from the open ones; an arriving
-- study is matched to its order by accession number and patient.

-- A site's HIS, by its HL7 sending application and facility (MSH-3, MSH-4), like an AE title.
-- An empty facility matches any facility of that application.
CREATE TABLE site_hl7_senders (
    application TEXT NOT NULL,
    facility    TEXT NOT NULL DEFAULT '',
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    PRIMARY KEY (application, facility)
);

CREATE TABLE orders (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id               BIGINT NOT NULL REFERENCES sites(id),
    accession_number      TEXT NOT NULL,
    placer_order_number   TEXT NOT NULL DEFAULT '',
    filler_order_number   TEXT NOT NULL DEFAULT '',
    patient_id            TEXT NOT NULL,
    issuer_of_patient_id  TEXT NOT NULL,
    patient_name          TEXT NOT NULL DEFAULT '',   -- DICOM PN: Alphabetic=Ideographic=Phonetic
    birth_date            TEXT NOT NULL DEFAULT '',   -- YYYYMMDD
    sex                   TEXT NOT NULL DEFAULT '',   -- M | F | O
    modality              TEXT NOT NULL,
    procedure_code        TEXT NOT NULL DEFAULT '',
    procedure_description TEXT NOT NULL DEFAULT '',
    priority              BIGINT NOT NULL,            -- 0 STAT, 1 urgent, 2 routine
    requesting_physician  TEXT NOT NULL DEFAULT '',
    requesting_department TEXT NOT NULL DEFAULT '',
    clinical_history      TEXT NOT NULL DEFAULT '',
    clinical_question     TEXT NOT NULL DEFAULT '',
    scheduled_at          BIGINT NOT NULL,            -- unix ms
    scheduled_date        TEXT NOT NULL,              -- YYYYMMDD, local to the hub
    scheduled_time        TEXT NOT NULL,              -- HHMMSS
    scheduled_station_ae  TEXT NOT NULL DEFAULT '',
    study_uid             TEXT NOT NULL,              -- given to the modality through the worklist
    source                TEXT NOT NULL,              -- hl7:APP | fhir:user | desk:user
    state                 TEXT NOT NULL,              -- scheduled | arrived | cancelled
    study_id              BIGINT REFERENCES studies(id),
    item_id               BIGINT REFERENCES worklist_items(id),
    overdue_at            BIGINT,                     -- when it was flagged as having no study
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    UNIQUE (site_id, accession_number)
);
CREATE INDEX orders_open ON orders (state, scheduled_date);
CREATE INDEX orders_item ON orders (item_id);
