//! bankpipe: a batch pipeline for bank transaction files.
//!
//! Every file found in the inbox is landed raw in the lake (content-addressed by its
//! SHA-256), every row is validated against the contract, and good rows are loaded
//! exactly once into the warehouse with lineage to file and line. See
//! `docs/ARCHITECTURE.md` for the map of modules; [`pipeline::run`] is the table of
//! contents of one batch run.

pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crypt;
pub mod export;
pub mod generate;
pub mod healthcheck;
pub mod hex;
pub mod lake;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod process;
pub mod profile;
pub mod progress;
pub mod push;
pub mod redact;
pub mod report;
pub mod retry;
pub mod scan;
pub mod schedule;
pub mod serve;
pub mod source;
pub mod validate;
pub mod warehouse;
pub mod workdir;
