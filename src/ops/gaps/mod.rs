//! The gaps lifecycle: list / show / retry / resolve / ignore, and the background retry of open
//! gaps.

pub mod filter;

pub use filter::{GapFilter, GapListArgs, GapStatus, GapView};
