//! MongoDB side: change stream reader and snapshot reader, through the official driver.

pub mod snapshot;
