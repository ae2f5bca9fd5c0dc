//! Glue to the operating system: locks, the allocator, logging, systemd, accounts.

pub(crate) mod accounts;
pub(crate) mod allocator;
pub mod lock;
pub mod logging;
pub(crate) mod regular_file;
pub(crate) mod sd_notify;
