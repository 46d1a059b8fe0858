-- A site may be bound to the client certificates its modalities present over DICOM TLS:
-- its AE titles are then accepted only over TLS and only with one of these certificates,
-- so a stolen or guessed AE title alone no longer stores into the site.
CREATE TABLE site_certificates (
    fingerprint TEXT PRIMARY KEY,           -- SHA-256 of the certificate's DER bytes, lowercase hex
    site_id     BIGINT NOT NULL REFERENCES sites(id),
    added_at    BIGINT NOT NULL
);
CREATE INDEX site_certificates_site ON site_certificates (site_id);
