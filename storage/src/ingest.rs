//! Ingest: stream one instance into the blob store, index it, and decide duplicates.
//!
//! Invariant (ARCHITECTURE.md #1): `finish` returns Ok only after the bytes are durable and
//! the index rows are committed; on any error nothing is visible (the blob is aborted or
//! deleted, the transaction rolled back).

use dicom_object::meta::FileMetaTableBuilder;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::attrs::{self, AttrError, InstanceAttrs};
use crate::blob::{BlobKey, BlobWriter};
use crate::charset::{self, Charset, DecodePolicy};
use crate::db::now_ms;
use crate::header::{HeaderError, HeaderSniffer};
use readhub_types::{SiteId, StudyPk};

use crate::arrival::Transfer;
use crate::sites::Site;
use crate::{Error, Storage};

/// readhub's implementation class UID (a UUID-derived UID under 2.25, PS3.5 B.2).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.137064508153409563713937712392860843541";
pub const IMPLEMENTATION_VERSION_NAME: &str = "READHUB_0.1";

/// Why an instance was refused. Transient ones ask the sender to retry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    #[error("not valid DICOM: {0}")]
    NotDicom(#[from] HeaderError),
    #[error("{0}")]
    Attributes(#[from] AttrError),
    #[error("the data set's {what} {found} does not match the {expected} announced for it")]
    Mismatch {
        what: &'static str,
        expected: String,
        found: String,
    },
    #[error("the instance exceeds the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("storage failed: {0}")]
    Storage(#[from] Error),
    // the attribute first: a C-STORE Error Comment keeps only 64 characters; the other
    // site is not named to the sender
    #[error("{attribute} is already used by another site ({uid}): refused so that sites' studies are never mixed; the hub's admins are alerted")]
    UidCollision { attribute: &'static str, uid: String },
}

impl IngestError {
    /// True when the instance itself is fine and a retry may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, IngestError::Storage(_))
    }

    /// What kind of refusal this is; each edge says it in its own protocol (a C-STORE-RSP
    /// status, a STOW-RS Failure Reason).
    pub fn refusal(&self) -> Refusal {
        match self {
            IngestError::TooLarge { .. } | IngestError::Storage(_) => Refusal::OutOfResources,
            IngestError::Mismatch { .. } | IngestError::UidCollision { .. } => Refusal::DataSetMismatch,
            IngestError::NotDicom(_) | IngestError::Attributes(_) => Refusal::CannotUnderstand,
        }
    }
}

/// The kinds of refusal of PS3.4 B.2.3, which C-STORE and STOW-RS both report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// out of resources: too large, or storage failed (the sender may retry later)
    OutOfResources,
    /// the data set does not match its SOP class or what was announced for it
    DataSetMismatch,
    /// not DICOM, truncated, or a required attribute missing
    CannotUnderstand,
}

/// What happened to an instance that was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestOutcome {
    /// first copy of this SOP Instance UID at this site
    Stored,
    /// byte-identical to the current version: nothing new was kept
    Duplicate,
    /// same SOP Instance UID, different bytes: kept as a new version, the old one retained
    NewVersion,
}

/// An instance that is now durable and indexed.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub site_id: SiteId,
    pub study_pk: StudyPk,
    pub attrs: InstanceAttrs,
    pub outcome: IngestOutcome,
    pub version: i64,
    pub size_bytes: u64,
    pub sha256: String,
    pub blob_key: String,
}

/// What the sender announced for the data set (from the C-STORE command).
#[derive(Debug, Clone)]
pub struct Announced {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// Streams one data set to the blob store while walking its header.
pub struct InstanceWriter {
    storage: Storage,
    site: Site,
    /// the association or request this instance arrives in (its arrival names it)
    transfer: Transfer,
    announced: Option<Announced>,
    ts_uid: String,
    /// None until the file meta group of a Part-10 upload has been read
    sniffer: Option<HeaderSniffer>,
    /// Part-10 uploads: the bytes so far, until the file meta group is complete
    pending_meta: Option<Vec<u8>>,
    blob: BlobWriter,
    key: BlobKey,
    hasher: Sha256,
    size: u64,
    failed: Option<IngestError>,
    /// STOW-RS to /studies/{uid}: instances of any other study are refused
    expected_study: Option<String>,
}

impl Storage {
    /// Begin receiving a bare data set (as C-STORE delivers it) in transfer syntax `ts_uid`.
    /// A Part-10 file meta group is written in front of it, built from what was announced.
    pub async fn begin_instance(
        &self,
        site: &Site,
        transfer: &Transfer,
        ts_uid: &str,
        announced: Announced,
        source_ae: Option<&str>,
    ) -> Result<InstanceWriter, IngestError> {
        let ts_uid = ts_uid.trim_end_matches(['\0', ' ']).to_string();
        let sniffer = HeaderSniffer::with_max_depth(&ts_uid, self.limits.max_header_bytes, self.limits.max_sequence_depth)?;
        let key = BlobKey::new_instance(site.id.get());
        let mut blob = self.blobs.writer(&key);
        let mut builder = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(announced.sop_class_uid.as_str())
            .media_storage_sop_instance_uid(announced.sop_instance_uid.as_str())
            .transfer_syntax(ts_uid.as_str())
            .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
            .implementation_version_name(IMPLEMENTATION_VERSION_NAME);
        if let Some(ae) = source_ae {
            builder = builder.source_application_entity_title(ae.trim());
        }
        let meta = builder.build().map_err(|e| {
            IngestError::Mismatch {
                what: "file meta",
                expected: "a valid SOP class, instance and transfer syntax".into(),
                found: e.to_string(),
            }
        })?;
        let mut head = vec![0u8; 128];
        head.extend_from_slice(b"DICM");
        meta.write(&mut head).map_err(|e| IngestError::Mismatch {
            what: "file meta",
            expected: "encodable".into(),
            found: e.to_string(),
        })?;
        if let Err(e) = blob.write(&head).await {
            blob.abort().await;
            return Err(e.into());
        }
        Ok(InstanceWriter {
            storage: self.clone(),
            site: site.clone(),
            transfer: transfer.clone(),
            announced: Some(announced),
            ts_uid,
            sniffer: Some(sniffer),
            pending_meta: None,
            blob,
            key,
            hasher: Sha256::new(),
            size: 0,
            failed: None,
            expected_study: None,
        })
    }
}

impl Storage {
    /// Begin receiving a complete Part-10 file (as STOW-RS delivers it). It is stored byte
    /// for byte; its file meta group says what it is.
    pub fn begin_part10(&self, site: &Site, transfer: &Transfer) -> InstanceWriter {
        let key = BlobKey::new_instance(site.id.get());
        InstanceWriter {
            storage: self.clone(),
            site: site.clone(),
            transfer: transfer.clone(),
            announced: None,
            ts_uid: String::new(),
            sniffer: None,
            pending_meta: Some(Vec::with_capacity(1024)),
            blob: self.blobs.writer(&key),
            key,
            hasher: Sha256::new(),
            size: 0,
            failed: None,
            expected_study: None,
        }
    }
}

/// The file meta group may not be larger than this (it is a few hundred bytes in practice).
const MAX_META: usize = 64 * 1024;

impl InstanceWriter {
    /// Refuse the instance unless it belongs to this study (STOW-RS to `/studies/{uid}`).
    pub fn expect_study(&mut self, study_uid: &str) {
        self.expected_study = Some(study_uid.to_string());
    }

    /// (SOP Class UID, SOP Instance UID) as announced by the command or the file meta group.
    pub fn announced(&self) -> Option<(String, String)> {
        self.announced.as_ref().map(|a| (a.sop_class_uid.clone(), a.sop_instance_uid.clone()))
    }

    /// Part-10 uploads: collect the preamble and file meta group, then start the walk.
    /// Returns the data set bytes that followed the meta group in `buf`, once complete.
    fn take_meta(&mut self) -> Result<Option<Vec<u8>>, IngestError> {
        let buf = self.pending_meta.as_ref().expect("called while pending");
        let not_dicom = |why: &str| IngestError::NotDicom(HeaderError::Malformed { offset: 0, reason: why.to_string() });
        if buf.len() < 144 {
            return Ok(None);
        }
        if &buf[128..132] != b"DICM" {
            return Err(not_dicom("no DICM prefix at byte 128: not a DICOM Part-10 file"));
        }
        if buf[132..138] != [0x02, 0x00, 0x00, 0x00, b'U', b'L'] {
            return Err(not_dicom("the file meta group does not start with its group length (0002,0000)"));
        }
        let group_len = u32::from_le_bytes(buf[140..144].try_into().expect("4 bytes")) as usize;
        if group_len > MAX_META {
            return Err(not_dicom("the file meta group is implausibly large"));
        }
        let meta_end = 144 + group_len;
        if buf.len() < meta_end {
            return Ok(None);
        }
        // every element must fit the group the group length declares, with a VR the group
        // uses, before dicom-object's meta reader (which allocates declared lengths) sees it
        if crate::header::part10_dataset_offset(&buf[..meta_end]) != Some(meta_end) {
            return Err(not_dicom("the file meta group is malformed: its elements do not fit its group length (0002,0000)"));
        }
        let meta = dicom_object::meta::FileMetaTable::from_reader(&buf[128..meta_end])
            .map_err(|e| not_dicom(&format!("unreadable file meta group: {e}")))?;
        let trim = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
        self.ts_uid = trim(meta.transfer_syntax());
        self.announced = Some(Announced {
            sop_class_uid: trim(meta.media_storage_sop_class_uid()),
            sop_instance_uid: trim(meta.media_storage_sop_instance_uid()),
        });
        self.sniffer = Some(HeaderSniffer::with_max_depth(&self.ts_uid, self.storage.limits.max_header_bytes, self.storage.limits.max_sequence_depth)?);
        let rest = buf[meta_end..].to_vec();
        self.pending_meta = None;
        Ok(Some(rest))
    }

    fn walk(&mut self, dataset: &[u8]) -> Result<(), IngestError> {
        let sniffer = self.sniffer.as_mut().expect("the walk has started");
        sniffer.feed(dataset).map_err(IngestError::NotDicom)?;
        self.hasher.update(dataset);
        Ok(())
    }

    /// The next bytes of the data set. After an error the rest is read and discarded by the
    /// caller (so the association stays in step); `finish` reports the error.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), IngestError> {
        self.storage.note_receipt();
        if let Some(e) = &self.failed {
            return Err(clone_err(e));
        }
        self.size += bytes.len() as u64;
        if self.size > self.storage.limits.max_instance_bytes {
            self.failed = Some(IngestError::TooLarge {
                limit: self.storage.limits.max_instance_bytes,
            });
            return Err(clone_err(self.failed.as_ref().expect("just set")));
        }
        let walked = match self.pending_meta.as_mut() {
            Some(buf) => {
                buf.extend_from_slice(bytes);
                match self.take_meta() {
                    Ok(Some(dataset)) => self.walk(&dataset),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                }
            }
            None => self.walk(bytes),
        };
        if let Err(e) = walked {
            let copy = clone_err(&e);
            self.failed = Some(e);
            return Err(copy);
        }
        if let Err(e) = self.blob.write(bytes).await {
            let msg = e.to_string();
            self.failed = Some(IngestError::Storage(e));
            return Err(IngestError::Storage(Error::Invalid(msg)));
        }
        Ok(())
    }

    /// Give up on this instance (connection lost, association aborted): nothing is kept.
    /// Counted too: as refused or failed when it already was (too large, not DICOM, a write
    /// error) before the connection ended, as aborted otherwise.
    pub async fn abort(self) {
        let status = match &self.failed {
            Some(IngestError::Storage(_)) => "failed",
            Some(_) => "refused",
            None => "aborted",
        };
        metrics::counter!("readhub_instances_received_total", "site" => self.site.name.clone(), "status" => status).increment(1);
        self.blob.abort().await;
    }

    /// The data set is complete: validate, make durable, index. Counted for the operators
    /// (`readhub_instances_received_total{site,status}`, `readhub_received_bytes_total`)
    /// here, the one way in for C-STORE, STOW-RS, ECG uploads and import alike.
    pub async fn finish(self) -> Result<StoredInstance, IngestError> {
        let site = self.site.name.clone();
        let result = self.finish_unmetered().await;
        let status = match &result {
            Ok(inst) if inst.outcome == IngestOutcome::Duplicate => "duplicate",
            Ok(_) => "stored",
            Err(IngestError::Storage(_)) => "failed",
            Err(_) => "refused",
        };
        metrics::counter!("readhub_instances_received_total", "site" => site.clone(), "status" => status).increment(1);
        if let Ok(inst) = &result {
            metrics::counter!("readhub_received_bytes_total", "site" => site).increment(inst.size_bytes);
        }
        result
    }

    async fn finish_unmetered(self) -> Result<StoredInstance, IngestError> {
        let InstanceWriter {
            storage,
            site,
            transfer,
            announced,
            ts_uid,
            sniffer,
            pending_meta,
            blob,
            key,
            hasher,
            size,
            failed,
            expected_study,
        } = self;
        if let Some(e) = failed {
            blob.abort().await;
            return Err(e);
        }
        let Some(sniffer) = sniffer.filter(|_| pending_meta.is_none()) else {
            blob.abort().await;
            return Err(IngestError::NotDicom(HeaderError::Malformed {
                offset: 0,
                reason: "not a DICOM Part-10 file: it ends before its preamble and file meta information".into(),
            }));
        };
        let attrs = match sniffer
            .finish()
            .map_err(IngestError::from)
            .and_then(|h| {
                let policy = DecodePolicy {
                    fallback: site.charset_fallback.as_deref().and_then(Charset::from_term),
                };
                Ok(attrs::extract(&h, &policy)?)
            })
            .and_then(|a| check_announced(a, announced.as_ref()))
            .and_then(|a| match &expected_study {
                Some(s) if *s != a.study_uid => Err(IngestError::Mismatch {
                    what: "Study Instance UID",
                    expected: s.clone(),
                    found: a.study_uid,
                }),
                _ => Ok(a),
            })
        {
            Ok(a) => a,
            Err(e) => {
                blob.abort().await;
                return Err(e);
            }
        };
        let sha256 = hex::encode(hasher.finalize());
        let path = blob.finish().await?;
        debug_assert_eq!(path, key.as_path());
        match record(&storage, &site, &transfer, &attrs, &ts_uid, &path, size, &sha256).await {
            Ok((study_pk, outcome, version)) => {
                if outcome == IngestOutcome::Duplicate {
                    if let Err(e) = storage.blobs.delete(&path).await {
                        tracing::warn!(blob.key = %path, error = %e, "could not delete duplicate copy");
                    }
                }
                Ok(StoredInstance {
                    site_id: site.id,
                    study_pk,
                    attrs,
                    outcome,
                    version,
                    size_bytes: size,
                    sha256,
                    blob_key: path,
                })
            }
            Err(e) => {
                // not indexed, so not visible: remove the bytes too
                let _ = storage.blobs.delete(&path).await;
                Err(e.into())
            }
        }
    }
}

fn clone_err(e: &IngestError) -> IngestError {
    match e {
        IngestError::NotDicom(h) => IngestError::NotDicom(h.clone()),
        IngestError::Mismatch { what, expected, found } => IngestError::Mismatch {
            what: *what,
            expected: expected.clone(),
            found: found.clone(),
        },
        IngestError::TooLarge { limit } => IngestError::TooLarge { limit: *limit },
        other => IngestError::Storage(Error::Invalid(other.to_string())),
    }
}

fn check_announced(a: InstanceAttrs, announced: Option<&Announced>) -> Result<InstanceAttrs, IngestError> {
    if let Some(ann) = announced {
        let ann_inst = ann.sop_instance_uid.trim_end_matches(['\0', ' ']);
        let ann_class = ann.sop_class_uid.trim_end_matches(['\0', ' ']);
        if a.sop_instance_uid != ann_inst {
            return Err(IngestError::Mismatch {
                what: "SOP Instance UID",
                expected: ann_inst.to_string(),
                found: a.sop_instance_uid,
            });
        }
        if a.sop_class_uid != ann_class {
            return Err(IngestError::Mismatch {
                what: "SOP Class UID",
                expected: ann_class.to_string(),
                found: a.sop_class_uid,
            });
        }
    }
    Ok(a)
}

/// The site (other than `site`) that one of these UIDs already belongs to, if any: which
/// attribute, and the owner.
async fn uid_owner(tx: &mut crate::db::WriteTx<'_>, site: SiteId, a: &InstanceAttrs) -> Result<Option<(&'static str, String, SiteId)>, Error> {
    let checks: [(&'static str, &str, &str); 3] = [
        ("Study Instance UID", &a.study_uid, "SELECT site_id FROM studies WHERE study_uid = $1 AND site_id <> $2 LIMIT 1"),
        (
            "Series Instance UID",
            &a.series_uid,
            "SELECT st.site_id FROM series se JOIN studies st ON st.id = se.study_id \
             WHERE se.series_uid = $1 AND st.site_id <> $2 LIMIT 1",
        ),
        ("SOP Instance UID", &a.sop_instance_uid, "SELECT site_id FROM instances WHERE sop_instance_uid = $1 AND site_id <> $2 LIMIT 1"),
    ];
    for (attribute, uid, sql) in checks {
        let owner = sqlx::query(sql)
            .bind(uid)
            .bind(site)
            .fetch_optional(&mut **tx)
            .await
            .map_err(Error::db("look up UID owner"))?;
        if let Some(row) = owner {
            return Ok(Some((attribute, uid.to_string(), row.get(0))));
        }
    }
    Ok(None)
}

/// Index one durable instance. Returns (study pk, outcome, version). On SQLite the index
/// rows of instances acknowledged at about the same time (several associations) are
/// committed together, one fsync for all (`group_commit`); on PostgreSQL, which groups
/// commits itself, each in its own transaction.
#[allow(clippy::too_many_arguments)]
async fn record(
    storage: &Storage,
    site: &Site,
    transfer: &Transfer,
    a: &InstanceAttrs,
    ts_uid: &str,
    blob_key: &str,
    size: u64,
    sha256: &str,
) -> Result<(StudyPk, IngestOutcome, i64), IngestError> {
    if let Some(committer) = &storage.group_commit {
        let job = IndexRows {
            site: site.clone(),
            transfer: transfer.clone(),
            attrs: a.clone(),
            ts_uid: ts_uid.to_string(),
            blob_key: blob_key.to_string(),
            size,
            sha256: sha256.to_string(),
        };
        return committer.run(job).await;
    }
    // PostgreSQL runs senders' transactions side by side: two senders of the same new
    // instance may both find no current version and both insert version 1. The second is
    // refused by the unique key; tried again, it sees the first's row (a duplicate, or a
    // new version).
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut tx = storage.db.begin_write().await?;
        match record_in(&mut tx, site, transfer, a, ts_uid, blob_key, size, sha256).await {
            Err(Error::Db { source: sqlx::Error::Database(d), .. }) if d.is_unique_violation() && attempt < 3 => {
                drop(tx);
                tracing::debug!(sop_instance_uid = %a.sop_instance_uid, attempt, "another sender indexed the same instance at the same time; again");
            }
            Err(e) => return Err(e.into()),
            Ok(out) => {
                tx.commit().await?;
                return out;
            }
        }
    }
}

/// What indexing one durable instance needs, as a job of the group commit.
pub struct IndexRows {
    site: Site,
    transfer: Transfer,
    attrs: InstanceAttrs,
    ts_uid: String,
    blob_key: String,
    size: u64,
    sha256: String,
}

impl crate::group_commit::Job for IndexRows {
    type Answer = Result<(StudyPk, IngestOutcome, i64), IngestError>;

    fn write<'a, 'b: 'a>(&'a self, tx: &'a mut crate::db::WriteTx<'b>) -> futures::future::BoxFuture<'a, Result<Self::Answer, Error>> {
        Box::pin(record_in(tx, &self.site, &self.transfer, &self.attrs, &self.ts_uid, &self.blob_key, self.size, &self.sha256))
    }

    fn failed(e: Error) -> Self::Answer {
        Err(IngestError::Storage(e))
    }
}

/// The index rows of one durable instance, in `tx` (committed by the caller). An instance
/// whose Study, Series or SOP Instance UID already belongs to another site is refused (its
/// bytes are removed by the caller), and the refusal is recorded for the admins: one site
/// must never be able to add images to another site's study. The outer error: the database
/// failed (roll back); the inner: the instance is refused (what was written stays).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_in(
    tx: &mut crate::db::WriteTx<'_>,
    site: &Site,
    transfer: &Transfer,
    a: &InstanceAttrs,
    ts_uid: &str,
    blob_key: &str,
    size: u64,
    sha256: &str,
) -> Result<Result<(StudyPk, IngestOutcome, i64), IngestError>, Error> {
    let now = now_ms();
    let source = transfer.source.as_str();
    let issuer = a.issuer_of_patient_id.clone().unwrap_or_else(|| site.issuer.clone());

    if let Some((attribute, uid, owner)) = uid_owner(&mut *tx, site.id, a).await? {
        let collision = crate::arrival::UidCollision {
            attribute: attribute.to_string(),
            uid: uid.clone(),
            sop_instance_uid: a.sop_instance_uid.clone(),
            sender_site: site.id,
            owner_site: owner,
            source: source.to_string(),
        };
        audit(&mut *tx, site.id, &a.sop_instance_uid, "refused_uid_collision", 0, sha256, source, now).await?;
        crate::arrival::record_collision(tx, transfer, &collision, now).await?;
        tracing::warn!(
            site = %site.name, attribute, uid = %uid, owner_site = %owner, sop_instance_uid = %a.sop_instance_uid,
            "instance refused: its UID already belongs to another site"
        );
        return Ok(Err(IngestError::UidCollision { attribute, uid }));
    }

    // the current version of this SOP instance at this site, if any
    let current = sqlx::query(
        "SELECT id, sha256, version, study_id FROM instances \
         WHERE site_id = $1 AND sop_instance_uid = $2 AND is_current = 1",
    )
    .bind(site.id)
    .bind(&a.sop_instance_uid)
    .fetch_optional(&mut **tx)
    .await
    .map_err(Error::db("select instance"))?;
    if let Some(row) = &current {
        let existing_sha: String = row.get("sha256");
        if existing_sha == sha256 {
            let version: i64 = row.get("version");
            let study_id: StudyPk = row.get("study_id");
            audit(tx, site.id, &a.sop_instance_uid, "duplicate", version, sha256, source, now).await?;
            tracing::info!(
                sop_instance_uid = %a.sop_instance_uid, site = %site.name, version,
                "duplicate instance: identical bytes already stored, nothing new kept"
            );
            return Ok(Ok((study_id, IngestOutcome::Duplicate, version)));
        }
    }

    let patient_pk: i64 = sqlx::query(
        "INSERT INTO patients (site_id, issuer, patient_id, name, birth_date, sex) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (site_id, issuer, patient_id) DO UPDATE SET \
           name = COALESCE(excluded.name, patients.name), \
           birth_date = COALESCE(excluded.birth_date, patients.birth_date), \
           sex = COALESCE(excluded.sex, patients.sex) \
         RETURNING id",
    )
    .bind(site.id)
    .bind(&issuer)
    .bind(&a.patient_id)
    .bind(a.patient_name.clone())
    .bind(a.patient_birth_date.clone())
    .bind(a.patient_sex.clone())
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::db("upsert patient"))?
    .get(0);
    if let Some(name) = &a.patient_name {
        for term in charset::person_name_terms(name) {
            sqlx::query(
                "INSERT INTO patient_name_terms (patient_id, term) VALUES ($1, $2) \
                 ON CONFLICT (patient_id, term) DO NOTHING",
            )
            .bind(patient_pk)
            .bind(term)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("insert name term"))?;
        }
    }

    let study_pk: StudyPk = sqlx::query(
        "INSERT INTO studies (site_id, patient_id, study_uid, study_date, study_time, accession_number, \
           study_id, study_description, referring_physician, first_received_at, last_received_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (site_id, study_uid) DO UPDATE SET \
           last_received_at = excluded.last_received_at, \
           study_date = COALESCE(studies.study_date, excluded.study_date), \
           study_time = COALESCE(studies.study_time, excluded.study_time), \
           accession_number = COALESCE(studies.accession_number, excluded.accession_number), \
           study_id = COALESCE(studies.study_id, excluded.study_id), \
           study_description = COALESCE(studies.study_description, excluded.study_description), \
           referring_physician = COALESCE(studies.referring_physician, excluded.referring_physician) \
         RETURNING id",
    )
    .bind(site.id)
    .bind(patient_pk)
    .bind(&a.study_uid)
    .bind(a.study_date.clone())
    .bind(a.study_time.clone())
    .bind(a.accession_number.clone())
    .bind(a.study_id.clone())
    .bind(a.study_description.clone())
    .bind(a.referring_physician.clone())
    .bind(now)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::db("upsert study"))?
    .get(0);

    let series_pk: i64 = sqlx::query(
        "INSERT INTO series (study_id, series_uid, modality, series_number, series_description, body_part) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (study_id, series_uid) DO UPDATE SET \
           modality = COALESCE(series.modality, excluded.modality), \
           body_part = COALESCE(series.body_part, excluded.body_part) \
         RETURNING id",
    )
    .bind(study_pk)
    .bind(&a.series_uid)
    .bind(a.modality.clone())
    .bind(a.series_number.clone())
    .bind(a.series_description.clone())
    .bind(a.body_part.clone())
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::db("upsert series"))?
    .get(0);

    let (outcome, version) = match &current {
        Some(row) => {
            let old_id: i64 = row.get("id");
            let old_version: i64 = row.get("version");
            sqlx::query("UPDATE instances SET is_current = 0 WHERE id = $1")
                .bind(old_id)
                .execute(&mut **tx)
                .await
                .map_err(Error::db("retire instance version"))?;
            audit(&mut *tx, site.id, &a.sop_instance_uid, "new_version", old_version + 1, sha256, source, now).await?;
            tracing::warn!(
                sop_instance_uid = %a.sop_instance_uid, site = %site.name, version = old_version + 1,
                "instance re-sent with different bytes: kept as a new version, the old one retained"
            );
            (IngestOutcome::NewVersion, old_version + 1)
        }
        None => (IngestOutcome::Stored, 1),
    };
    let instance_pk: i64 = sqlx::query(
        "INSERT INTO instances (series_id, study_id, site_id, sop_instance_uid, sop_class_uid, version, is_current, \
           instance_number, transfer_syntax_uid, rows_, columns_, number_of_frames, blob_key, size_bytes, sha256, \
           received_at, source, metadata_json) \
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) RETURNING id",
    )
    .bind(series_pk)
    .bind(study_pk)
    .bind(site.id)
    .bind(&a.sop_instance_uid)
    .bind(&a.sop_class_uid)
    .bind(version)
    .bind(a.instance_number.clone())
    .bind(ts_uid)
    .bind(a.rows)
    .bind(a.columns)
    .bind(a.number_of_frames)
    .bind(blob_key)
    .bind(size as i64)
    .bind(sha256)
    .bind(now)
    .bind(source)
    .bind(a.metadata_json.clone())
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::db("insert instance"))?
    .get(0);

    // Keep the study/series summaries QIDO answers from, incrementally: recounting all of a
    // study's instances for each one would make a large CT quadratic. Each UPDATE … RETURNING
    // takes the row lock first, so concurrent writers (PostgreSQL) add up correctly.
    let mut new_series = 0i64;
    if outcome == IngestOutcome::Stored {
        let n: i64 = sqlx::query("UPDATE series SET num_instances = num_instances + 1 WHERE id = $1 RETURNING num_instances")
            .bind(series_pk)
            .fetch_one(&mut **tx)
            .await
            .map_err(Error::db("count series instances"))?
            .get(0);
        new_series = (n == 1) as i64;
    }
    let added = (outcome == IngestOutcome::Stored) as i64;
    let summary = sqlx::query(
        "UPDATE studies SET num_instances = num_instances + $1, num_series = num_series + $2 WHERE id = $3 \
         RETURNING modalities, sop_classes",
    )
    .bind(added)
    .bind(new_series)
    .bind(study_pk)
    .fetch_one(&mut **tx)
    .await
    .map_err(Error::db("update study summary"))?;
    let merge = |list: String, value: Option<&str>| -> (String, bool) {
        let mut items: Vec<String> = list.split('\\').filter(|s| !s.is_empty()).map(str::to_string).collect();
        match value.map(str::trim).filter(|v| !v.is_empty()) {
            Some(v) if !items.iter().any(|i| i == v) => {
                items.push(v.to_string());
                items.sort();
                (items.join("\\"), true)
            }
            _ => (list, false),
        }
    };
    let (modalities, m_changed) = merge(summary.get("modalities"), a.modality.as_deref());
    let (classes, c_changed) = merge(summary.get("sop_classes"), Some(&a.sop_class_uid));
    if m_changed || c_changed {
        sqlx::query("UPDATE studies SET modalities = $1, sop_classes = $2 WHERE id = $3")
            .bind(modalities)
            .bind(classes)
            .bind(study_pk)
            .execute(&mut **tx)
            .await
            .map_err(Error::db("update study summary"))?;
    }
    // the hand-over to the worklist, durable with the index row (storage::arrival)
    crate::arrival::record_instance(tx, transfer, study_pk, instance_pk, now).await?;
    Ok(Ok((study_pk, outcome, version)))
}

#[allow(clippy::too_many_arguments)]
async fn audit(
    tx: &mut crate::db::WriteTx<'_>,
    site_id: SiteId,
    sop: &str,
    decision: &str,
    version: i64,
    sha256: &str,
    source: &str,
    at: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO ingest_audit (site_id, sop_instance_uid, decision, version, sha256, source, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(site_id)
    .bind(sop)
    .bind(decision)
    .bind(version)
    .bind(sha256)
    .bind(source)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(Error::db("insert ingest audit"))?;
    Ok(())
}
