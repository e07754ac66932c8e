//! The relay as a library: the binary (`main.rs`) is a thin CLI over these modules, and the
//! tests and benchmarks use the job engine directly.

pub mod config;
pub mod consensus;
pub mod datadir;
pub mod http;
pub mod inbound;
pub mod jobs;
pub mod ledger;
pub mod metrics;
pub mod network;
pub mod payments;
pub mod recent;
pub mod slots;
pub mod status;
pub mod upstream;
