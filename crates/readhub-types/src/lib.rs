//! readhub's shared vocabulary, named by every crate that needs it: typed identifiers
//! ([`ids`]), facts about SOP classes ([`sop`]) and ECG lead names ([`lead`]). No I/O,
//! nothing else.

pub mod ids;
pub mod lead;
pub mod pn;
pub mod sop;

pub use ids::*;
