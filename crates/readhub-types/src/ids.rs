//! Typed identifiers: the database keys of sites, pools, users and worklist items, and the
//! DICOM UIDs of studies, series and instances. Each is its own type, so a call such as
//! `reassign(item, to_user)` cannot take its arguments the wrong way round, and a Series
//! Instance UID cannot be passed where a Study Instance UID is meant.
//!
//! They serialise as the bare number or string (JSON keeps its shape) and, with the `sqlx`
//! feature, bind and decode as the column they are stored in.

/// With the `sqlx` feature: bind and decode `$name` as the `$inner` it wraps.
macro_rules! sqlx_as {
    ($name:ident, $inner:ty) => {
        #[cfg(feature = "sqlx")]
        impl<DB: sqlx::Database> sqlx::Type<DB> for $name
        where
            $inner: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <$inner as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <$inner as sqlx::Type<DB>>::compatible(ty)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $name
        where
            $inner: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(&self, buf: &mut <DB as sqlx::Database>::ArgumentBuffer) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <$inner as sqlx::Encode<'q, DB>>::encode_by_ref(&self.0, buf)
            }
        }

        #[cfg(feature = "sqlx")]
        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $name
        where
            $inner: sqlx::Decode<'r, DB>,
        {
            fn decode(value: <DB as sqlx::Database>::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
                Ok($name(<$inner as sqlx::Decode<'r, DB>>::decode(value)?))
            }
        }
    };
}

macro_rules! db_id {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            pub const fn new(v: i64) -> Self {
                $name(v)
            }
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = std::num::ParseIntError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                s.parse().map($name)
            }
        }

        sqlx_as!($name, i64);
    };
}

db_id!(
    /// A site (a township clinic, a village post): the tenant its studies belong to.
    SiteId
);
db_id!(
    /// A reading pool (the county's imaging or ECG readers).
    PoolId
);
db_id!(
    /// A user account.
    UserId
);
db_id!(
    /// A worklist item (one per study).
    ItemId
);
db_id!(
    /// A study's row in the index.
    StudyPk
);
db_id!(
    /// An order (检查申请) from a site's HIS or technician.
    OrderId
);

macro_rules! uid {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A UID as received or stored (ingest has validated it; request paths are
            /// checked with `is_valid_uid` before they are turned into one).
            pub fn new(v: impl Into<String>) -> Self {
                $name(v.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        sqlx_as!($name, String);
    };
}

uid!(
    /// Study Instance UID (0020,000D).
    StudyUid
);
uid!(
    /// Series Instance UID (0020,000E).
    SeriesUid
);
uid!(
    /// SOP Instance UID (0008,0018).
    SopInstanceUid
);

/// A certificate's SHA-256 fingerprint (of its DER bytes), lowercase hex: how
/// `openssl x509 -fingerprint -sha256` names it, without the colons. A site bound to
/// certificates accepts DICOM only over TLS from a client presenting one of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct CertFingerprint(String);

impl CertFingerprint {
    /// Hex as typed or stored: with or without colons, any case; `None` unless it is 32
    /// bytes of hex.
    pub fn parse(text: &str) -> Option<Self> {
        let hex = text.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(CertFingerprint(hex))
    }

    /// The fingerprint of a digest's 32 bytes.
    pub fn from_digest(digest: [u8; 32]) -> Self {
        CertFingerprint(digest.iter().map(|b| format!("{b:02x}")).collect())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

sqlx_as!(CertFingerprint, String);

/// Is `uid` acceptable as a DICOM UID: 1-64 characters of digits and dots, no empty
/// component? (Leading zeros in a component, which PS3.5 9.1 forbids, are tolerated: real
/// modalities send them.)
pub fn is_valid_uid(uid: &str) -> bool {
    !uid.is_empty()
        && uid.len() <= 64
        && uid.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && !uid.starts_with('.')
        && !uid.ends_with('.')
        && !uid.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_json_shape() {
        assert_eq!(serde_json::to_string(&ItemId::new(42)).unwrap(), "42");
        assert_eq!(serde_json::from_str::<UserId>("7").unwrap(), UserId::new(7));
        assert_eq!(serde_json::to_string(&StudyUid::new("1.2.3")).unwrap(), "\"1.2.3\"");
    }

    #[test]
    fn uid_syntax() {
        assert!(is_valid_uid("1.2.840.10008.5.1.4.1.1.7"));
        assert!(is_valid_uid("2.25.0") && is_valid_uid("1.02.3"));
        assert!(!is_valid_uid("1..2") && !is_valid_uid("") && !is_valid_uid("1.2.x") && !is_valid_uid(".1"));
        assert!(!is_valid_uid(&"1".repeat(65)));
    }
}
