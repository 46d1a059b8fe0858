-- How long a study waits after its association ends before it is ready to read (issue 15):
-- a site may set its own, for all its modalities ('*') or for one. A CR/DX film or an ECG
-- is one association; a CT spread over several is not. Read by worklist::quiet.
CREATE TABLE site_quiet_periods (
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    modality    TEXT NOT NULL,
    quiet_ms    BIGINT NOT NULL,
    PRIMARY KEY (site_id, modality)
);
