//! One module per page.

pub mod dao;
pub mod market;
pub mod network;
pub mod relays;
pub mod wallet;
