//! readhub's shared vocabulary, named by every crate that needs it: typed identifiers
//! ([`ids`]) and facts about SOP classes ([`sop`]). No I/O, nothing else.

pub mod ids;
pub mod sop;

pub use ids::*;
