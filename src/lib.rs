//! chitin: an OCI container runtime with runc's command line. The library holds all of it but
//! the argument dispatch (src/main.rs), so that the fuzz targets (tests/fuzz) and the terminal
//! helper (tests/recvtty) can use its parts.

pub mod cgroup;
pub mod cli;
pub mod clone;
pub mod commands;
pub mod container;
pub mod dbus;
pub mod edits;
pub mod fdpass;
pub mod fsutil;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod hooks;
pub mod init;
pub mod logger;
pub mod netdev;
pub mod plan;
pub mod profiles;
pub mod pty;
pub mod resctrl;
pub mod rootless;
pub mod seccomp;
pub mod selfexe;
pub mod state;
pub mod sync;
pub mod timefmt;
pub mod tpm;
