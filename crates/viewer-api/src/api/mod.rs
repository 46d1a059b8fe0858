//! readhub's JSON API under `/api`, one module per resource. Handlers translate HTTP to
//! the worklist's calls and back; who may see what is the worklist's `Scope`, what a role
//! may do is checked with `auth::require`.

pub mod admin;
pub mod audit;
pub mod critical;
pub mod ecg;
pub mod pdf;
pub mod print;
pub mod reports;
pub mod session;
pub mod waveforms;
pub mod items;
pub mod orders;
pub mod fhir;

pub(crate) use reports::readable_report;
pub(crate) use items::visible_item;
