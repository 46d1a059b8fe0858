-- Results out (issue 14): where a site wants its signed reports (its HIS over HL7, its FHIR
-- server, its PACS as an Encapsulated PDF), and the durable outbox that takes them there.

-- JSON: {"hl7": "host:port", "fhir": "base URL", "pacs": {"ae_title", "host", "port"}}
ALTER TABLE sites ADD COLUMN outbound TEXT;

-- One row per report event and destination, queued in the transaction that signs, corrects
-- or amends; delivered by one node at a time (the lease), retried with backoff.
CREATE TABLE result_outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    site_id          BIGINT NOT NULL REFERENCES sites(id),
    item_id          BIGINT NOT NULL REFERENCES worklist_items(id),
    report_id        BIGINT NOT NULL REFERENCES reports(id),
    channel          TEXT NOT NULL,              -- hl7 | fhir | pacs
    event            TEXT NOT NULL,              -- signed | corrected | addended
    destination      TEXT NOT NULL,              -- where it goes, as configured when queued
    created_at       BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_until      BIGINT,
    leased_by        TEXT,
    delivered_at     BIGINT,
    last_error       TEXT
);
CREATE INDEX result_outbox_due ON result_outbox (delivered_at, next_attempt_at);
