//! The workspace's bounds-checked cursor over untrusted bytes (`rackd_types::reader`).

pub(crate) use rackd_types::reader::Reader;
