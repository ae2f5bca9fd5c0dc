//! Glue to the operating system: locks, the allocator, logging, systemd, accounts.

pub mod accounts;
pub mod allocator;
pub mod lock;
pub mod logging;
pub mod regular_file;
pub mod sd_notify;
