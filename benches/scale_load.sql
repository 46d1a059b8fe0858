-- Synthetic index rows for benches/scale.sh, written in bulk by PostgreSQL itself: studies
-- :from .. :to - 1 (numbers), each of one patient, one series and ten instances, spread over
-- 200 sites and six years of study dates, with a worklist item each (open for the newest
-- :open studies, reported before). Patients P0000123 are named BENCH^P0000123.
SET synchronous_commit = off;
INSERT INTO patients (site_id, issuer, patient_id, name, sex)
SELECT s.id, 'READHUB:' || s.name, 'P' || lpad(n::text, 8, '0'), 'BENCH^P' || lpad(n::text, 8, '0'), CASE WHEN n % 2 = 0 THEN 'F' ELSE 'M' END
FROM generate_series(:from, :to - 1) n JOIN sites s ON s.name = 'Site-' || lpad((n % 200)::text, 3, '0');
INSERT INTO patient_name_terms (patient_id, term)
SELECT p.id, upper(p.name) FROM patients p WHERE p.patient_id >= 'P' || lpad(:from::text, 8, '0') AND p.patient_id < 'P' || lpad(:to::text, 8, '0');
INSERT INTO studies (site_id, patient_id, study_uid, study_date, study_time, accession_number, study_description, modalities,
                     sop_classes, num_series, num_instances, first_received_at, last_received_at)
SELECT p.site_id, p.id, '1.2.826.0.1.3680043.10.9.77.' || substr(p.patient_id, 2)::bigint,
       to_char(date '2020-01-01' + ((substr(p.patient_id, 2)::bigint * 7919) % 2190)::int, 'YYYYMMDD'), '093000',
       'A' || substr(p.patient_id, 2), CASE WHEN substr(p.patient_id, 2)::bigint % 3 = 0 THEN 'Hand' ELSE 'Chest PA' END,
       (ARRAY['CR', 'DX', 'CT', 'MR', 'ECG'])[1 + substr(p.patient_id, 2)::bigint % 5], '1.2.840.10008.5.1.4.1.1.7', 1, 10,
       1700000000000 + substr(p.patient_id, 2)::bigint, 1700000000000 + substr(p.patient_id, 2)::bigint
FROM patients p WHERE p.patient_id >= 'P' || lpad(:from::text, 8, '0') AND p.patient_id < 'P' || lpad(:to::text, 8, '0');
INSERT INTO series (study_id, series_uid, modality, series_number, num_instances)
SELECT st.id, st.study_uid || '.1', st.modalities, '1', 10 FROM studies st
WHERE st.study_uid LIKE '1.2.826.0.1.3680043.10.9.77.%' AND st.id NOT IN (SELECT study_id FROM series);
INSERT INTO instances (series_id, study_id, site_id, sop_instance_uid, sop_class_uid, version, is_current, instance_number,
                       transfer_syntax_uid, rows_, columns_, number_of_frames, blob_key, size_bytes, sha256, received_at, source,
                       renditions_at)
SELECT se.id, se.study_id, st.site_id, se.series_uid || '.' || k, '1.2.840.10008.5.1.4.1.1.7', 1, 1, k::text,
       '1.2.840.10008.1.2.1', 512, 512, 1, 'instances/bench/' || se.id || '-' || k || '.dcm', 524288, md5(se.series_uid || k),
       st.first_received_at, 'bench', 0
FROM series se JOIN studies st ON st.id = se.study_id CROSS JOIN generate_series(1, 10) k
WHERE se.series_uid LIKE '1.2.826.0.1.3680043.10.9.77.%' AND NOT EXISTS (SELECT 1 FROM instances i WHERE i.series_id = se.id);
-- every study has its item: reported, except the newest :open, which are ready (5% STAT,
-- 15% urgent, the rest routine), due within the next day (none breached: the SLA ticker
-- would otherwise spend the measurement recording breaches)
INSERT INTO worklist_items (study_id, site_id, pool_id, priority, state, routed_by, last_instance_at, ready_at, created_at,
                            updated_at, deadline_at)
SELECT st.id, st.site_id, (SELECT id FROM pools WHERE name = 'imaging'),
       CASE WHEN st.id % 20 = 0 THEN 0 WHEN st.id % 20 < 4 THEN 1 ELSE 2 END, 'reported', 'bench',
       st.last_received_at, st.last_received_at, st.last_received_at, st.last_received_at,
       (extract(epoch FROM now()) * 1000)::bigint + 86400000 + (st.id % 1440) * 60000
FROM studies st WHERE st.study_uid LIKE '1.2.826.0.1.3680043.10.9.77.%' AND NOT EXISTS (SELECT 1 FROM worklist_items w WHERE w.study_id = st.id);
UPDATE worklist_items SET state = 'reported' WHERE state = 'ready' AND routed_by = 'bench';
UPDATE worklist_items SET state = 'ready' WHERE id IN (SELECT id FROM worklist_items WHERE routed_by = 'bench' ORDER BY id DESC LIMIT :open);
-- VACUUM, not only ANALYZE: otherwise autovacuum visits the new rows during the measurement
VACUUM ANALYZE;
