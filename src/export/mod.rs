//! Quarterly ML datasets (issue #10): pseudonymised identifiers and drift reports.

pub mod drift;
pub mod pseudonym;
