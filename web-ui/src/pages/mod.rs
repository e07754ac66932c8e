//! One module per page.

pub mod market;
pub mod network;
pub mod planned;
pub mod relays;
pub mod wallet;
