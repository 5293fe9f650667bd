//! Unique names for namespaces, interfaces and directories.
//!
//! Tests run in parallel threads of one process and in several processes at once (two `cargo test`
//! invocations, other crates' tests), so a name combines the PID, a per-process counter and a few
//! random bits; the random part protects against PID reuse when an earlier run leaked something.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{Error, Result};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Longest interface name Linux accepts (IFNAMSIZ is 16 including the NUL).
pub const IFNAME_MAX: usize = 15;

/// A fresh value of the process-wide counter.
pub fn next_counter() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// 16 random bits. `RandomState` is seeded from the OS per instance, which is all the entropy we
/// need to avoid collisions with leftovers; no RNG crate required.
pub fn short_random() -> u16 {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(next_counter());
    (h.finish() & 0xffff) as u16
}

/// `<prefix>-<pid>-<counter>-<rand4hex>`, e.g. `nl-frr-4242-7-a1b2`. Used for namespaces and
/// directories, which have no short length limit.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}-{:04x}",
        std::process::id(),
        next_counter(),
        short_random()
    )
}

/// A unique interface name of at most 15 bytes: `<prefix up to 3 chars><counter hex><rand hex>`.
///
/// Interface names only need to be unique inside a namespace, and every namespace we create is
/// itself unique, so this is only needed for interfaces created in a shared namespace.
pub fn unique_ifname(prefix: &str) -> String {
    let p: String = prefix
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(3)
        .collect();
    let mut s = format!("{p}{:x}{:04x}", next_counter(), short_random());
    s.truncate(IFNAME_MAX);
    s
}

/// Checks an interface name the way the kernel would (`dev_valid_name`).
pub fn check_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes"
    } else if name == "." || name == ".." {
        "reserved"
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "contains '/', ':' or whitespace"
    } else {
        return Ok(());
    };
    Err(Error::InvalidIfName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        let a = unique("t");
        let b = unique("t");
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t-{}-", std::process::id())));
    }

    #[test]
    fn ifnames_fit() {
        for _ in 0..1000 {
            let n = unique_ifname("vethlong");
            check_ifname(&n).unwrap();
        }
    }

    #[test]
    fn bad_ifnames() {
        for n in ["", "0123456789abcdef", "a/b", "a b", "..", "a:1"] {
            assert!(check_ifname(n).is_err(), "{n:?}");
        }
        check_ifname("eth0").unwrap();
        check_ifname("0123456789abcde").unwrap();
    }
}
