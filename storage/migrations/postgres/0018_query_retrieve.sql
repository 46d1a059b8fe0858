-- Query/retrieve (issue 14): a county workstation's AE title belongs to the reading pool
-- whose studies it may query and pull, as a site's AE titles belong to the site; and the
-- network address of an AE title that studies may be moved to (C-MOVE destinations).
CREATE TABLE pool_ae_titles (
    ae_title    TEXT PRIMARY KEY,
    pool_id     BIGINT NOT NULL REFERENCES pools(id)
);

CREATE TABLE dicom_nodes (
    ae_title    TEXT PRIMARY KEY,
    host        TEXT NOT NULL,
    port        BIGINT NOT NULL
);
