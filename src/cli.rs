//! Command-line interface (clap command tree).
