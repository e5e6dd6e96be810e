//! The `mongo2pg` binary as operators run it: argument parsing and exit codes, wrong connection
//! options and secret files, the operator commands against a live source and target, log output
//! and redaction, and the demo.

#[path = "../support/mod.rs"]
mod support;

mod args;
mod connection_options;
mod demo;
mod least_privilege;
mod logging;
mod mongo_credentials;
mod operator_commands;
