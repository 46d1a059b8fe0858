//! Community sites (tenants), their calling AE titles and their consortium.

use sqlx::Row;

use readhub_types::{CertFingerprint, SiteId};

use crate::charset::Charset;
use crate::db::{now_ms, Db};
use crate::Error;

/// A community site: every study belongs to the site that sent it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub consortium_id: i64,
    /// Issuer of Patient ID used when the modality sends none: patients of two sites with
    /// the same Patient ID are never merged.
    pub issuer: String,
    pub charset_fallback: Option<String>,
    pub ae_titles: Vec<String>,
}

/// The consortium a fresh install starts with.
pub const DEFAULT_CONSORTIUM: &str = "default";

/// Check an AE title: 1–16 characters of the default repertoire, no backslash or control
/// characters, not all spaces (PS3.5 6.2).
pub fn validate_ae_title(ae: &str) -> Result<String, Error> {
    let t = ae.trim();
    if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| (0x20..0x7F).contains(&b) && b != b'\\') {
        return Err(Error::Invalid(format!(
            "AE title {ae:?} is invalid: use 1-16 printable ASCII characters without backslash"
        )));
    }
    Ok(t.to_string())
}

pub async fn ensure_consortium(db: &Db, name: &str) -> Result<i64, Error> {
    let mut tx = db.begin_write().await?;
    sqlx::query("INSERT INTO consortia (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert consortium"))?;
    let id: i64 = sqlx::query("SELECT id FROM consortia WHERE name = $1")
        .bind(name)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::db("select consortium"))?
        .get(0);
    tx.commit().await?;
    Ok(id)
}

pub async fn consortium_id(db: &Db, name: &str) -> Result<Option<i64>, Error> {
    Ok(sqlx::query("SELECT id FROM consortia WHERE name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select consortium"))?
        .map(|r| r.get(0)))
}

pub async fn consortium_name(db: &Db, id: i64) -> Result<Option<String>, Error> {
    Ok(sqlx::query("SELECT name FROM consortia WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select consortium"))?
        .map(|r| r.get(0)))
}

/// Register a site with its calling AE titles.
pub async fn add_site(
    db: &Db,
    name: &str,
    consortium_id: i64,
    ae_titles: &[String],
    charset_fallback: Option<&str>,
) -> Result<Site, Error> {
    let name = name.trim();
    if name.is_empty() {
        return Err(Error::Invalid("a site needs a name".into()));
    }
    if let Some(cs) = charset_fallback {
        if Charset::from_term(cs).is_none() {
            return Err(Error::Invalid(format!(
                "unknown character set {cs:?}: use e.g. GBK, GB18030, ISO_IR 192, ISO_IR 100"
            )));
        }
    }
    let aes = ae_titles
        .iter()
        .map(|a| validate_ae_title(a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut tx = db.begin_write().await?;
    if sqlx::query("SELECT id FROM sites WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("select site"))?
        .is_some()
    {
        return Err(Error::Invalid(format!("site {name:?} already exists")));
    }
    let id: i64 = sqlx::query(
        "INSERT INTO sites (name, consortium_id, issuer, charset_fallback, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(name)
    .bind(consortium_id)
    .bind(format!("READHUB:{name}"))
    .bind(charset_fallback.map(str::to_string))
    .bind(now_ms())
    .fetch_one(&mut *tx)
    .await
    .map_err(Error::db("insert site"))?
    .get(0);
    for ae in &aes {
        let taken: Option<String> = sqlx::query(
            "SELECT s.name FROM site_ae_titles a JOIN sites s ON s.id = a.site_id WHERE a.ae_title = $1",
        )
        .bind(ae)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("select AE title"))?
        .map(|r| r.get(0));
        if let Some(other) = taken {
            return Err(Error::Invalid(format!(
                "AE title {ae} is already registered to site {other:?}"
            )));
        }
        sqlx::query("INSERT INTO site_ae_titles (ae_title, site_id) VALUES ($1, $2)")
            .bind(ae)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(Error::db("insert AE title"))?;
    }
    tx.commit().await?;
    get_site(db, SiteId::new(id)).await?.ok_or_else(|| Error::NotFound(format!("site {id}")))
}

fn site_from_row(r: &sqlx::any::AnyRow, aes: Vec<String>) -> Site {
    Site {
        id: r.get("id"),
        name: r.get("name"),
        consortium_id: r.get("consortium_id"),
        issuer: r.get("issuer"),
        charset_fallback: r.get("charset_fallback"),
        ae_titles: aes,
    }
}

async fn ae_titles_of(db: &Db, site_id: SiteId) -> Result<Vec<String>, Error> {
    Ok(sqlx::query("SELECT ae_title FROM site_ae_titles WHERE site_id = $1 ORDER BY ae_title")
        .bind(site_id)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("select AE titles"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

macro_rules! site_select {
    ($rest:literal) => {
        concat!("SELECT id, name, consortium_id, issuer, charset_fallback FROM sites ", $rest)
    };
}

pub async fn get_site(db: &Db, id: SiteId) -> Result<Option<Site>, Error> {
    let row = sqlx::query(site_select!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select site"))?;
    match row {
        Some(r) => Ok(Some(site_from_row(&r, ae_titles_of(db, id).await?))),
        None => Ok(None),
    }
}

pub async fn site_by_name(db: &Db, name: &str) -> Result<Option<Site>, Error> {
    let row = sqlx::query(site_select!("WHERE name = $1"))
        .bind(name)
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select site"))?;
    match row {
        Some(r) => {
            let id: SiteId = r.get("id");
            Ok(Some(site_from_row(&r, ae_titles_of(db, id).await?)))
        }
        None => Ok(None),
    }
}

/// The site a calling AE title belongs to, if registered.
pub async fn site_for_ae(db: &Db, ae_title: &str) -> Result<Option<Site>, Error> {
    let id: Option<SiteId> = sqlx::query("SELECT site_id FROM site_ae_titles WHERE ae_title = $1")
        .bind(ae_title.trim())
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select AE title"))?
        .map(|r| r.get(0));
    match id {
        Some(id) => get_site(db, id).await,
        None => Ok(None),
    }
}

/// Every registered calling AE title (one query: read at each association).
pub async fn all_ae_titles(db: &Db) -> Result<std::collections::HashSet<String>, Error> {
    // sites' modalities and the reading pools' workstations
    Ok(sqlx::query("SELECT ae_title FROM site_ae_titles UNION SELECT ae_title FROM pool_ae_titles")
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("select AE titles"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub async fn list_sites(db: &Db) -> Result<Vec<Site>, Error> {
    let rows = sqlx::query(site_select!("ORDER BY name"))
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("list sites"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id: SiteId = r.get("id");
        out.push(site_from_row(&r, ae_titles_of(db, id).await?));
    }
    Ok(out)
}

/// Register a calling AE title to a site on first contact (open enrollment, for a first
/// install); the site is named after the AE title.
pub async fn enroll_ae(db: &Db, ae_title: &str, consortium_id: i64) -> Result<Site, Error> {
    let ae = validate_ae_title(ae_title)?;
    if let Some(s) = site_for_ae(db, &ae).await? {
        return Ok(s);
    }
    match add_site(db, &ae, consortium_id, std::slice::from_ref(&ae), None).await {
        Ok(s) => Ok(s),
        // a concurrent association enrolled it first
        Err(_) => site_for_ae(db, &ae)
            .await?
            .ok_or_else(|| Error::Invalid(format!("could not enroll AE title {ae}"))),
    }
}

/// Bind a site to a client certificate (by fingerprint): from now on its AE titles are
/// accepted only over DICOM TLS with this certificate (or another bound one).
pub async fn bind_certificate(db: &Db, site: SiteId, fingerprint: &CertFingerprint) -> Result<(), Error> {
    let mut tx = db.begin_write().await?;
    let owner: Option<SiteId> = sqlx::query("SELECT site_id FROM site_certificates WHERE fingerprint = $1")
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("select site certificate"))?
        .map(|r| r.get(0));
    match owner {
        Some(s) if s == site => return Ok(()),
        Some(_) => {
            return Err(Error::Invalid(format!(
                "certificate {fingerprint} is already bound to another site; unbind it there first"
            )))
        }
        None => {}
    }
    sqlx::query("INSERT INTO site_certificates (fingerprint, site_id, added_at) VALUES ($1, $2, $3)")
        .bind(fingerprint)
        .bind(site)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert site certificate"))?;
    tx.commit().await
}

/// Unbind a certificate from a site; `false` when it was not bound to it.
pub async fn unbind_certificate(db: &Db, site: SiteId, fingerprint: &CertFingerprint) -> Result<bool, Error> {
    let n = sqlx::query("DELETE FROM site_certificates WHERE fingerprint = $1 AND site_id = $2")
        .bind(fingerprint)
        .bind(site)
        .execute(db.pool())
        .await
        .map_err(Error::db("delete site certificate"))?
        .rows_affected();
    Ok(n > 0)
}

/// The certificates a site is bound to (empty: any transport, no certificate needed).
pub async fn certificates_of(db: &Db, site: SiteId) -> Result<Vec<CertFingerprint>, Error> {
    Ok(sqlx::query("SELECT fingerprint FROM site_certificates WHERE site_id = $1 ORDER BY fingerprint")
        .bind(site)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("select site certificates"))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The AE titles of sites bound to certificates (refused on the plain DICOM listener).
pub async fn certificate_bound_ae_titles(db: &Db) -> Result<std::collections::HashSet<String>, Error> {
    Ok(sqlx::query(
        "SELECT a.ae_title FROM site_ae_titles a WHERE EXISTS (SELECT 1 FROM site_certificates c WHERE c.site_id = a.site_id)",
    )
    .fetch_all(db.pool())
    .await
    .map_err(Error::db("select certificate-bound AE titles"))?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// Rename a site. Its Issuer of Patient ID stays what it was (`READHUB:<old name>` for a
/// site created under that name): patients are keyed by it, and renaming must not split a
/// patient's studies in two.
pub async fn rename_site(db: &Db, site: SiteId, new_name: &str) -> Result<Site, Error> {
    let name = new_name.trim();
    if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
        return Err(Error::Invalid("a site name is 1-128 characters, no control characters".into()));
    }
    let mut tx = db.begin_write().await?;
    let taken = sqlx::query("SELECT id FROM sites WHERE name = $1 AND id <> $2")
        .bind(name)
        .bind(site)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("select site name"))?
        .is_some();
    if taken {
        return Err(Error::Invalid(format!("a site named {name:?} already exists")));
    }
    sqlx::query("UPDATE sites SET name = $1 WHERE id = $2")
        .bind(name)
        .bind(site)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("rename site"))?;
    tx.commit().await?;
    get_site(db, site).await?.ok_or_else(|| Error::Invalid("the site is gone".into()))
}

/// Remove a calling AE title from a site (a modality retired, or its title leaked): from
/// the next association on it is refused. `false` when the site had no such title.
pub async fn remove_ae_title(db: &Db, site: SiteId, ae_title: &str) -> Result<bool, Error> {
    let n = sqlx::query("DELETE FROM site_ae_titles WHERE ae_title = $1 AND site_id = $2")
        .bind(ae_title.trim())
        .bind(site)
        .execute(db.pool())
        .await
        .map_err(Error::db("remove AE title"))?
        .rows_affected();
    Ok(n > 0)
}

/// A site's HIS as HL7 v2 names itself: sending application (MSH-3) and, optionally,
/// facility (MSH-4). Stored upper-cased and trimmed, compared the same way.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Hl7Sender {
    pub application: String,
    /// empty: any facility of this application
    pub facility: String,
}

impl Hl7Sender {
    /// `APP` or `APP@FACILITY` (the form the CLI and the admin API take).
    pub fn parse(s: &str) -> Result<Hl7Sender, Error> {
        let (app, fac) = s.split_once('@').unwrap_or((s, ""));
        let norm = |v: &str| v.trim().to_uppercase();
        let (application, facility) = (norm(app), norm(fac));
        let ok = |v: &str| v.len() <= 180 && !v.contains(['|', '^', '~', '\\', '&', '\r', '\n']);
        if application.is_empty() || !ok(&application) || !ok(&facility) {
            return Err(Error::Invalid(format!(
                "HL7 sender {s:?}: give the sending application (MSH-3), optionally @facility (MSH-4), \
                 without HL7 delimiters, e.g. HIS or HIS@TOWNSHIP1"
            )));
        }
        Ok(Hl7Sender { application, facility })
    }
}

impl std::fmt::Display for Hl7Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.facility.is_empty() {
            f.write_str(&self.application)
        } else {
            write!(f, "{}@{}", self.application, self.facility)
        }
    }
}

/// Map an HL7 sender to a site. Refused when the sender belongs to another site.
pub async fn add_hl7_sender(db: &Db, site: SiteId, sender: &Hl7Sender) -> Result<(), Error> {
    let mut tx = db.begin_write().await?;
    let owner: Option<SiteId> = sqlx::query("SELECT site_id FROM site_hl7_senders WHERE application = $1 AND facility = $2")
        .bind(&sender.application)
        .bind(&sender.facility)
        .fetch_optional(&mut *tx)
        .await
        .map_err(Error::db("select HL7 sender"))?
        .map(|r| r.get(0));
    match owner {
        Some(o) if o == site => return Ok(()),
        Some(o) => {
            return Err(Error::Invalid(format!("HL7 sender {sender} already belongs to site {o}; remove it there first")));
        }
        None => {}
    }
    sqlx::query("INSERT INTO site_hl7_senders (application, facility, site_id) VALUES ($1, $2, $3)")
        .bind(&sender.application)
        .bind(&sender.facility)
        .bind(site)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert HL7 sender"))?;
    tx.commit().await
}

/// Remove an HL7 sender from a site. `false` when the site had no such sender.
pub async fn remove_hl7_sender(db: &Db, site: SiteId, sender: &Hl7Sender) -> Result<bool, Error> {
    let n = sqlx::query("DELETE FROM site_hl7_senders WHERE application = $1 AND facility = $2 AND site_id = $3")
        .bind(&sender.application)
        .bind(&sender.facility)
        .bind(site)
        .execute(db.pool())
        .await
        .map_err(Error::db("remove HL7 sender"))?
        .rows_affected();
    Ok(n > 0)
}

/// A site's HL7 senders.
pub async fn hl7_senders_of(db: &Db, site: SiteId) -> Result<Vec<Hl7Sender>, Error> {
    Ok(sqlx::query("SELECT application, facility FROM site_hl7_senders WHERE site_id = $1 ORDER BY application, facility")
        .bind(site)
        .fetch_all(db.pool())
        .await
        .map_err(Error::db("select HL7 senders"))?
        .iter()
        .map(|r| Hl7Sender { application: r.get(0), facility: r.get(1) })
        .collect())
}

/// The site a message from `application` at `facility` (MSH-3, MSH-4) belongs to: the
/// exact pair first, then the application alone.
pub async fn site_for_hl7_sender(db: &Db, application: &str, facility: &str) -> Result<Option<Site>, Error> {
    let (app, fac) = (application.trim().to_uppercase(), facility.trim().to_uppercase());
    let id: Option<SiteId> = sqlx::query(
        "SELECT site_id FROM site_hl7_senders WHERE application = $1 AND (facility = $2 OR facility = '') \
         ORDER BY facility DESC LIMIT 1",
    )
    .bind(&app)
    .bind(&fac)
    .fetch_optional(db.pool())
    .await
    .map_err(Error::db("select HL7 sender"))?
    .map(|r| r.get(0));
    match id {
        Some(id) => get_site(db, id).await,
        None => Ok(None),
    }
}

/// The reading pool a workstation's AE title belongs to (it may query and retrieve the
/// pool's studies; it stores nothing).
pub async fn pool_for_ae(db: &Db, ae_title: &str) -> Result<Option<readhub_types::PoolId>, Error> {
    Ok(sqlx::query("SELECT pool_id FROM pool_ae_titles WHERE ae_title = $1")
        .bind(ae_title.trim())
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select pool AE title"))?
        .map(|r| r.get(0)))
}

/// Register a workstation's AE title with a reading pool. Refused when a site or another
/// pool has it.
pub async fn add_pool_ae(db: &Db, pool: readhub_types::PoolId, ae_title: &str) -> Result<(), Error> {
    let ae = validate_ae_title(ae_title)?;
    if site_for_ae(db, &ae).await?.is_some() {
        return Err(Error::Invalid(format!("AE title {ae} belongs to a site; a workstation needs its own")));
    }
    match pool_for_ae(db, &ae).await? {
        Some(p) if p == pool => return Ok(()),
        Some(p) => return Err(Error::Invalid(format!("AE title {ae} already belongs to another pool (id {p})"))),
        None => {}
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("INSERT INTO pool_ae_titles (ae_title, pool_id) VALUES ($1, $2)")
        .bind(&ae)
        .bind(pool)
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert pool AE title"))?;
    tx.commit().await
}

/// Where an AE title listens (for C-MOVE to it).
pub async fn node_address(db: &Db, ae_title: &str) -> Result<Option<(String, u16)>, Error> {
    Ok(sqlx::query("SELECT host, port FROM dicom_nodes WHERE ae_title = $1")
        .bind(ae_title.trim())
        .fetch_optional(db.pool())
        .await
        .map_err(Error::db("select DICOM node"))?
        .map(|r| (r.get(0), r.get::<i64, _>(1) as u16)))
}

/// Set where a registered AE title (a site's or a pool's) listens.
pub async fn set_node_address(db: &Db, ae_title: &str, host: &str, port: u16) -> Result<(), Error> {
    let ae = validate_ae_title(ae_title)?;
    if site_for_ae(db, &ae).await?.is_none() && pool_for_ae(db, &ae).await?.is_none() {
        return Err(Error::Invalid(format!("AE title {ae} is not registered to a site or a pool: register it first")));
    }
    if host.trim().is_empty() || port == 0 {
        return Err(Error::Invalid("give a host and a port (1–65535)".into()));
    }
    let mut tx = db.begin_write().await?;
    sqlx::query("DELETE FROM dicom_nodes WHERE ae_title = $1").bind(&ae).execute(&mut *tx).await.map_err(Error::db("replace DICOM node"))?;
    sqlx::query("INSERT INTO dicom_nodes (ae_title, host, port) VALUES ($1, $2, $3)")
        .bind(&ae)
        .bind(host.trim())
        .bind(i64::from(port))
        .execute(&mut *tx)
        .await
        .map_err(Error::db("insert DICOM node"))?;
    tx.commit().await
}
