//! HL7 v2, an edge of readhub like the DICOM gateway: orders in over MLLP (ORM^O01,
//! OMI^O23) with an ACK or a NAK that names the segment and field at fault, in the
//! character set MSH-18 names (UTF-8, GB18030). What an order is and what it does to the
//! worklist is decided in `worklist::orders`; here is only the translation.

pub mod message;
pub mod mllp;
pub mod orders;

pub use message::{Charset, Nak, Us};
pub mod results;
