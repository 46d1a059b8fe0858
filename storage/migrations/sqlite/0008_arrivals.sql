-- The durable hand-over from ingest to the worklist (storage::arrival): an arrival is
-- written in the same transaction as the index row of the instance it announces, and
-- deleted by the worklist's consumer in the same transaction as the item change it makes.
CREATE TABLE arrivals (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,        -- instance | transfer_ended
    node         TEXT NOT NULL,        -- the process that received it
    transfer     TEXT NOT NULL,        -- node/boot/assoc-N or node/boot/stow-N
    study_id     BIGINT REFERENCES studies(id),
    instance_id  BIGINT REFERENCES instances(id),
    at           BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    next_try_at  BIGINT NOT NULL,
    last_error   TEXT
);
CREATE INDEX arrivals_due ON arrivals(next_try_at, id);
CREATE INDEX arrivals_node ON arrivals(node, kind);

-- The transfers still sending a study (worklist): a study is not ready while one is open.
-- Replaces a counter that a crash left forever above zero.
CREATE TABLE open_transfers (
    study_id   BIGINT NOT NULL REFERENCES studies(id),
    transfer   TEXT NOT NULL,
    node       TEXT NOT NULL,
    opened_at  BIGINT NOT NULL,
    PRIMARY KEY (study_id, transfer)
);
CREATE INDEX open_transfers_transfer ON open_transfers(transfer);
CREATE INDEX open_transfers_node ON open_transfers(node);

ALTER TABLE worklist_items DROP COLUMN open_associations;

-- Studies indexed before this version whose hand-over was lost (the process died between
-- the acknowledgement and the worklist): hand them over now.
INSERT INTO arrivals (kind, node, transfer, study_id, instance_id, at, next_try_at)
SELECT 'instance', 'upgrade', 'upgrade/0008', st.id,
       (SELECT MIN(i.id) FROM instances i WHERE i.study_id = st.id AND i.is_current = 1), st.last_received_at, 0
FROM studies st
WHERE NOT EXISTS (SELECT 1 FROM worklist_items w WHERE w.study_id = st.id)
  AND EXISTS (SELECT 1 FROM instances i WHERE i.study_id = st.id AND i.is_current = 1);
INSERT INTO arrivals (kind, node, transfer, at, next_try_at)
SELECT 'transfer_ended', 'upgrade', 'upgrade/0008', 0, 0
WHERE EXISTS (SELECT 1 FROM arrivals WHERE transfer = 'upgrade/0008');
