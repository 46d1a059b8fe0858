//! Typed states and roles; strings only at the database edge.

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
    }
);

str_enum!(
    /// A report version's status.
    ReportStatus { Draft => "draft", Final => "final" }
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
    }
);

/// Reading priority: STAT first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Stat = 0,
    Urgent = 1,
    Routine = 2,
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
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub site_id: Option<i64>,
    pub pool_id: Option<i64>,
    pub seniority: Seniority,
    /// supervises their pool: gets its alerts, may reassign its work
    pub supervisor: bool,
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
        for s in [ItemState::Receiving, ItemState::Ready, ItemState::Claimed, ItemState::Reported, ItemState::Rejected] {
            assert_eq!(ItemState::try_from(s.as_str()).unwrap(), s);
        }
        assert!(ItemState::try_from("pending").is_err());
        assert!(Role::try_from("superuser").is_err());
    }
}
