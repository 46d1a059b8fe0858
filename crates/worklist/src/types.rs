//! Typed states and roles; strings only at the database edge.

use readhub_types::{PoolId, SiteId, UserId};
use serde::Serialize;

macro_rules! str_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }
        impl TryFrom<&str> for $name {
            type Error = crate::Error;
            fn try_from(s: &str) -> Result<Self, crate::Error> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err(crate::Error::Invalid(format!(
                        concat!("unknown ", stringify!($name), " {:?}"), other))),
                }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

str_enum!(
    /// Who a user is; decides what they may see and do.
    Role { Admin => "admin", Technician => "technician", Reader => "reader", Referrer => "referrer" }
);

str_enum!(
    /// Where a worklist item is in its life.
    ItemState {
        Receiving => "receiving",
        Ready => "ready",
        Claimed => "claimed",
        Reported => "reported",
        Rejected => "rejected",
        Preliminary => "preliminary",
    }
);

str_enum!(
    /// A report version's status.
    ReportStatus { Draft => "draft", Preliminary => "preliminary", Final => "final", Superseded => "superseded" }
);

str_enum!(
    /// Reason codes of a quality rejection (the site retakes the study).
    RejectReason {
        Positioning => "positioning",
        Exposure => "exposure",
        Motion => "motion",
        Artefact => "artefact",
        WrongPatientOrPart => "wrong_patient_or_part",
        Incomplete => "incomplete",
    }
);

str_enum!(
    /// A reader's seniority: seniors sign off juniors' reports where a pool requires it.
    Seniority { Junior => "junior", Senior => "senior" }
);

impl Default for Seniority {
    fn default() -> Self {
        Seniority::Junior
    }
}

str_enum!(
    /// What kind of reading a pool does.
    PoolKind { Imaging => "imaging", Ecg => "ecg" }
);

str_enum!(
    /// Every transition an item goes through (the audit and turnaround trail).
    EventKind {
        Arrived => "arrived",
        Routed => "routed",
        Ready => "ready",
        Claimed => "claimed",
        Released => "released",
        Drafted => "drafted",
        Signed => "signed",
        NewImages => "new_images",
        NewImagesAfterReport => "new_images_after_report",
        Renewed => "renewed",
        LeaseExpired => "lease_expired",
        Reassigned => "reassigned",
        Rerouted => "rerouted",
        PriorityChanged => "priority_changed",
        Breached => "breached",
        Rejected => "rejected",
        Requeued => "requeued",
        Submitted => "submitted",
        Edited => "edited",
        SentBack => "sent_back",
        Addended => "addended",
        Corrected => "corrected",
        CriticalFlagged => "critical_flagged",
        CriticalNotified => "critical_notified",
        CriticalAcknowledged => "critical_acknowledged",
        CriticalEscalated => "critical_escalated",
        CriticalSuggested => "critical_suggested",
        CriticalDismissed => "critical_dismissed",
        Delivered => "delivered",
        OrderLinked => "order_linked",
        OrderMismatch => "order_mismatch",
    }
);

/// Reading priority: STAT first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Stat = 0,
    Urgent = 1,
    Routine = 2,
}

/// Routine unless someone says otherwise.
impl Default for Priority {
    fn default() -> Self {
        Priority::Routine
    }
}

impl Priority {
    pub fn parse(s: &str) -> Result<Priority, crate::Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "stat" => Ok(Priority::Stat),
            "urgent" | "high" => Ok(Priority::Urgent),
            "routine" => Ok(Priority::Routine),
            other => Err(crate::Error::Invalid(format!("unknown priority {other:?}: use stat, urgent or routine"))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "stat",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }

    pub fn from_i64(v: i64) -> Priority {
        match v {
            0 => Priority::Stat,
            1 => Priority::Urgent,
            _ => Priority::Routine,
        }
    }

    /// From Requested Procedure Priority (0040,1003): STAT, HIGH, ROUTINE, MEDIUM, LOW.
    pub fn from_dicom(s: Option<&str>) -> Priority {
        match s.map(|s| s.trim().to_ascii_uppercase()).as_deref() {
            Some("STAT") => Priority::Stat,
            Some("HIGH") | Some("URGENT") => Priority::Urgent,
            _ => Priority::Routine,
        }
    }
}

/// An authenticated user.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub site_id: Option<SiteId>,
    pub pool_id: Option<PoolId>,
    pub seniority: Seniority,
    /// supervises their pool: gets its alerts, may reassign its work
    pub supervisor: bool,
    /// modalities a reader reads (empty: all)
    pub modalities: Vec<String>,
    /// daily duty hours, local `FROM-TO` (None: always on duty)
    pub duty_hours: Option<String>,
}

impl User {
    /// May this reader read a study of these modalities (`CR\DX`)?
    pub fn reads(&self, modalities: &str) -> bool {
        self.modalities.is_empty() || modalities.split('\\').filter(|m| !m.is_empty()).all(|m| self.modalities.iter().any(|q| q.eq_ignore_ascii_case(m)))
    }

    /// Is the reader on duty at `at` (ms), local time `utc_offset_hours`?
    pub fn on_duty(&self, at: i64, utc_offset_hours: i32) -> bool {
        match self.duty_hours.as_deref().map(crate::hours::parse_hours) {
            None => true,
            Some(Err(_)) => false,
            Some(Ok((from, to))) => crate::hours::in_hours(from, to, at, utc_offset_hours),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_from_requested_procedure_priority() {
        assert_eq!(Priority::from_dicom(Some("STAT")), Priority::Stat);
        assert_eq!(Priority::from_dicom(Some(" high ")), Priority::Urgent);
        assert_eq!(Priority::from_dicom(Some("ROUTINE")), Priority::Routine);
        assert_eq!(Priority::from_dicom(Some("LOW")), Priority::Routine);
        assert_eq!(Priority::from_dicom(None), Priority::Routine);
        assert!(Priority::Stat < Priority::Urgent && Priority::Urgent < Priority::Routine, "queues sort STAT first");
    }

    #[test]
    fn states_round_trip_through_their_database_strings() {
        for s in [ItemState::Receiving, ItemState::Ready, ItemState::Claimed, ItemState::Reported, ItemState::Rejected, ItemState::Preliminary] {
            assert_eq!(ItemState::try_from(s.as_str()).unwrap(), s);
        }
        assert!(ItemState::try_from("pending").is_err());
        assert!(Role::try_from("superuser").is_err());
    }
}
