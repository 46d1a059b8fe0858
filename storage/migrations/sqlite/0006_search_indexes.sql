-- QIDO at 10^5 studies: patient ID, accession number and the patient → studies join each
-- get an index (measured: 1.3 s → see BENCHMARKS.md). Name terms already have one; the
-- query gives SQLite a prefix range to use it.
CREATE INDEX patients_patient_id ON patients(patient_id);
CREATE INDEX studies_accession ON studies(accession_number);
CREATE INDEX studies_patient ON studies(patient_id);

-- Claim-next asks first for breached items, usually none: a partial index answers that
-- without walking the whole queue (measured: claim-next p50 75 ms → see BENCHMARKS.md).
CREATE INDEX worklist_items_breached ON worklist_items(pool_id, state) WHERE breached_at IS NOT NULL;
