//! The integration tests: one binary (one link of the test harness), one
//! module per area. Each drives the real `mnist-monitor` binary and real
//! peers (sshd, Chromium, Prometheus) as a user would.

mod common;
mod control;
mod device;
mod docs;
mod gpu;
mod hardware;
mod layout;
mod nothing_lost;
mod pictures;
mod prometheus;
mod remote;
mod review;
mod runs_index;
mod security;
mod server_api;
mod slurm;
mod sweep;
mod train_cli;
mod web_page;
