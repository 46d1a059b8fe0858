-- Storage no longer decides retrieve URLs: cached DICOM JSON marks bulk data with a
-- marker and the tag; the HTTP layer builds the URL.
UPDATE instances SET metadata_json = REPLACE(metadata_json, '{{readhub:instance}}/bulkdata/', '{{readhub:bulk}}')
WHERE metadata_json IS NOT NULL;

-- The modality's priority flag is read by the worklist from the instance's DICOM JSON.
ALTER TABLE studies DROP COLUMN requested_priority;
