//! Value patterns of Cilium's CRDs (addresses, prefixes, communities), built from their
//! grammar rather than copied, and tested against the model's own parsers.

/// A decimal in `0..=max` without sign or leading zeros, as an RE2/Rust regex
/// alternation (no anchors).
pub fn decimal_upto(max: u64) -> String {
    let digits: Vec<u8> = max.to_string().bytes().map(|b| b - b'0').collect();
    let n = digits.len();
    let mut alts = vec!["[0-9]".to_owned()];
    match n {
        0 | 1 => return format!("[0-{max}]"),
        2 => {}
        3 => alts.push("[1-9][0-9]".into()),
        _ => alts.push(format!("[1-9][0-9]{{1,{}}}", n - 2)),
    }
    // n-digit numbers up to `max`, one alternative per position where a lower digit is taken.
    let class = |lo: u8, hi: u8| {
        if lo == hi {
            lo.to_string()
        } else {
            format!("[{lo}-{hi}]")
        }
    };
    let tail = |k: usize| match k {
        0 => String::new(),
        1 => "[0-9]".to_owned(),
        k => format!("[0-9]{{{k}}}"),
    };
    let mut prefix = String::new();
    for (i, &d) in digits.iter().enumerate() {
        let lo = u8::from(i == 0);
        if d > lo {
            alts.push(format!("{prefix}{}{}", class(lo, d - 1), tail(n - i - 1)));
        }
        prefix.push(char::from(b'0' + d));
    }
    alts.push(prefix);
    alts.join("|")
}

/// An IPv4 address (dotted quad, no leading zeros).
fn ipv4() -> String {
    let octet = format!("({})", decimal_upto(255));
    format!("({octet}\\.){{3}}{octet}")
}

/// An IPv6 address per RFC 3986's `IPv6address` rule (with an IPv4 tail allowed).
fn ipv6() -> String {
    let h = "[0-9A-Fa-f]{1,4}";
    let ls32 = format!("({h}:{h}|{})", ipv4());
    let head = |max: usize| {
        if max == 0 {
            format!("({h})?")
        } else {
            format!("(({h}:){{0,{max}}}{h})?")
        }
    };
    [
        format!("({h}:){{6}}{ls32}"),
        format!("::({h}:){{5}}{ls32}"),
        format!("{}::({h}:){{4}}{ls32}", head(0)),
        format!("{}::({h}:){{3}}{ls32}", head(1)),
        format!("{}::({h}:){{2}}{ls32}", head(2)),
        format!("{}::{h}:{ls32}", head(3)),
        format!("{}::{ls32}", head(4)),
        format!("{}::{h}", head(5)),
        format!("{}::", head(6)),
    ]
    .map(|a| format!("({a})"))
    .join("|")
}

/// Cilium's peer/local address pattern: an IPv4 address, or an IPv6 address with an
/// optional `%zone`, with surrounding whitespace allowed.
pub fn ip_address_pattern() -> String {
    format!("^\\s*(({})|({})(%.+)?)\\s*$", ipv4(), ipv6())
}

/// An IPv4 or IPv6 prefix (`10.0.0.0/8`, `2001:db8::/32`).
pub fn cidr_pattern() -> String {
    format!(
        "^((({})/({}))|(({})/({})))$",
        ipv4(),
        decimal_upto(32),
        ipv6(),
        decimal_upto(128)
    )
}

/// RFC 1997 standard community: a u32, or two u16 separated by a colon.
pub fn standard_community_pattern() -> String {
    let u16 = decimal_upto(u64::from(u16::MAX));
    format!(
        "^({})$|^({u16}):({u16})$",
        decimal_upto(u64::from(u32::MAX))
    )
}

/// RFC 8092 large community: three u32 separated by colons.
pub fn large_community_pattern() -> String {
    let u32 = format!("({})", decimal_upto(u64::from(u32::MAX)));
    format!("^{u32}:{u32}:{u32}$")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::cilium::{parse_large_community, parse_standard_community};
    use crate::validate::parse_ip;

    fn anchored(alt: &str) -> Regex {
        Regex::new(&format!("^({alt})$")).unwrap()
    }

    #[test]
    fn decimal_upto_matches_exactly_the_range() {
        for max in [
            0u64,
            7,
            9,
            10,
            31,
            99,
            100,
            127,
            128,
            255,
            65535,
            4_294_967_295,
        ] {
            let re = anchored(&decimal_upto(max));
            for n in (0..=max.min(3000)).chain([max]) {
                assert!(re.is_match(&n.to_string()), "{n} <= {max}");
            }
            for n in [max + 1, max * 10 + 9, max + 100] {
                assert!(!re.is_match(&n.to_string()), "{n} > {max}");
            }
            for bad in ["", "-1", "01", "00", "1a", " 1"] {
                assert!(!re.is_match(bad), "{bad:?} for {max}");
            }
        }
    }

    #[test]
    fn ip_pattern_agrees_with_the_model() {
        let re = Regex::new(&ip_address_pattern()).unwrap();
        for s in [
            "10.0.0.1",
            " 10.0.0.1 ",
            "255.255.255.255",
            "0.0.0.0",
            "::",
            "::1",
            "fe80::1%eth0",
            "2001:db8::1",
            "2001:db8:0:0:0:0:0:1",
            "1::",
            "1:2:3:4:5:6:7::",
            "::ffff:10.0.0.1",
            "1:2:3:4:5:6:10.0.0.1",
            "FD00:10::1",
            "10.0.0.256",
            "10.0.0",
            "01.0.0.1",
            "10.0.0.1%eth0",
            "2001:db8::1::2",
            "1:2:3:4:5:6:7:8:9",
            "fe80::1%",
            "x",
            "",
            "12345::",
        ] {
            assert_eq!(re.is_match(s), parse_ip(s, true).is_some(), "{s:?}");
        }
    }

    #[test]
    fn cidr_pattern_accepts_prefixes_of_both_families() {
        let re = Regex::new(&cidr_pattern()).unwrap();
        for ok in [
            "10.0.4.0/24",
            "0.0.0.0/0",
            "2001:db8::/64",
            "::/0",
            "fd00::/128",
        ] {
            assert!(re.is_match(ok), "{ok}");
        }
        for bad in [
            "10.0.4.0",
            "10.0.4.0/33",
            "2001:db8::/129",
            "2001:db8::",
            "x/8",
        ] {
            assert!(!re.is_match(bad), "{bad}");
        }
    }

    #[test]
    fn community_patterns_agree_with_the_model() {
        let std = Regex::new(&standard_community_pattern()).unwrap();
        let large = Regex::new(&large_community_pattern()).unwrap();
        for s in [
            "0",
            "65000:99",
            "4294967295",
            "4294967296",
            "65535:65535",
            "65536:1",
            "01",
            "1:2:3",
            "",
            "1:2",
            "4294967295:0:4294967295",
            "4294967296:0:0",
            "1::3",
        ] {
            assert_eq!(
                std.is_match(s),
                parse_standard_community(s).is_some(),
                "{s:?}"
            );
            assert_eq!(
                large.is_match(s),
                parse_large_community(s).is_some(),
                "{s:?}"
            );
        }
    }
}
