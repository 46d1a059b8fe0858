-- WADO-RS metadata: each instance's DICOM JSON (text in UTF-8, large binary values as
-- BulkDataURIs), cached at ingest so a study's metadata costs one query, no blob reads.
ALTER TABLE instances ADD COLUMN metadata_json TEXT;
