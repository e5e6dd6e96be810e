//! Typed configuration: the TOML mapping file plus runtime settings.
