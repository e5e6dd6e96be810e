//! The `mongo2pg` binary: parse the command line, set up tracing, run one command.
fn main() {}
