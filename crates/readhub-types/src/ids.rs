//! Typed identifiers (filled in below).
