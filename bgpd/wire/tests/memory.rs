//! What decoded UPDATEs keep allocated: interned attribute sets live as long as their routes
//! (a third of a million of them in a full table), so their slack counts.

#![allow(clippy::unwrap_used)] // Tests may unwrap.

use bgpd_wire::*;

/// An UPDATE for 10.0.0.0/24 with ORIGIN, NEXT_HOP and an AS_PATH of the given segments
/// (type, 4-octet ASNs).
fn update(segments: &[(u8, &[u32])]) -> Vec<u8> {
    let mut path = Vec::new();
    for (t, asns) in segments {
        path.push(*t);
        path.push(u8::try_from(asns.len()).unwrap());
        for a in *asns {
            path.extend_from_slice(&a.to_be_bytes());
        }
    }
    let mut attrs = vec![0x40, 1, 1, 0, 0x40, 2, u8::try_from(path.len()).unwrap()];
    attrs.extend_from_slice(&path);
    attrs.extend_from_slice(&[0x40, 3, 4, 192, 0, 2, 1]);
    let mut body = vec![0, 0];
    body.extend_from_slice(&u16::try_from(attrs.len()).unwrap().to_be_bytes());
    body.extend_from_slice(&attrs);
    body.extend_from_slice(&[24, 10, 0, 0]);
    let mut msg = vec![0xff; 16];
    msg.extend_from_slice(&u16::try_from(19 + body.len()).unwrap().to_be_bytes());
    msg.push(2);
    msg.extend_from_slice(&body);
    msg
}

fn as_path(msg: &[u8]) -> AsPath {
    let Message::Update(u) = decode_message(msg, &SessionContext::four_octet()).unwrap() else {
        panic!("not an UPDATE");
    };
    // Moved out, not cloned: a clone would be allocated to fit whatever the decoder did.
    std::sync::Arc::try_unwrap(u.attributes.unwrap())
        .unwrap()
        .as_path
}

/// The usual single segment is not followed by the three spare slots a `Vec` grown by
/// `push` reserves (96 bytes per attribute set, 32 MB of a 330,000-set table).
#[test]
fn as_path_segments_allocated_to_fit() {
    let one = as_path(&update(&[(2, &[65001, 3356])]));
    assert_eq!(one.segments, vec![AsSegment::Sequence(vec![65001, 3356])]);
    assert_eq!(one.segments.capacity(), 1);
    let two = as_path(&update(&[(2, &[65001]), (1, &[3356, 174])]));
    assert_eq!(two.segments.len(), 2);
    assert_eq!(two.segments.capacity(), 2);
}
