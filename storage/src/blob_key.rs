//! Where a thing lives in the blob store: keys come from [`BlobKey`], never from ad-hoc
//! strings (the blob store and its receive buffer both read them).

/// Where a thing lives in the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobKey {
    /// One stored version of an instance. The token makes every received copy its own
    /// object, so a re-send never overwrites what was acknowledged before.
    Instance {
        site_id: i64,
        day: String,
        token: String,
    },
}

impl BlobKey {
    pub fn new_instance(site_id: i64) -> Self {
        BlobKey::Instance {
            site_id,
            day: chrono::Utc::now().format("%Y%m%d").to_string(),
            token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Is `key` an instance's (not a rendition kept beside it)?
    pub fn is_instance_path(key: &str) -> bool {
        key.starts_with("instances/") && key.ends_with(".dcm")
    }

    pub fn as_path(&self) -> String {
        match self {
            BlobKey::Instance {
                site_id,
                day,
                token,
            } => format!("instances/{site_id}/{day}/{token}.dcm"),
        }
    }
}
