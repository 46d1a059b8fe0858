-- QIDO at 10^5 studies: patient ID, accession number and the patient → studies join each
-- get an index. text_pattern_ops lets LIKE 'prefix%' use the index whatever the
-- database's collation.
CREATE INDEX patients_patient_id ON patients(patient_id text_pattern_ops);
CREATE INDEX studies_accession ON studies(accession_number text_pattern_ops);
CREATE INDEX studies_patient ON studies(patient_id);
CREATE INDEX patient_name_terms_pattern ON patient_name_terms(term text_pattern_ops);

-- Claim-next asks first for breached items, usually none: a partial index answers that
-- without walking the whole queue (measured: claim-next p50 75 ms → see BENCHMARKS.md).
CREATE INDEX worklist_items_breached ON worklist_items(pool_id, state) WHERE breached_at IS NOT NULL;
