//! Message framing (RFC 4271 §4.1, §6.1) and the `tokio_util` codec.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::context::{HEADER_LEN, MAX_MESSAGE_LEN, SessionContext};
use crate::error::{DecodeError, EncodeError};
use crate::open::{decode_open, encode_open};
use crate::reader::Reader;
use crate::types::{Family, Message, Notification, RouteRefresh};
use crate::update::{decode_update, encode_update, patch_u16};

/// Message type codes (RFC 4271 §4.1, RFC 2918 §3).
pub mod msg_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// The all-ones header marker (RFC 4271 §4.1).
pub const MARKER: [u8; 16] = [0xff; 16];

/// Minimum lengths per message type (RFC 4271 §4.2-§4.5, RFC 2918 §3).
const MIN_OPEN: usize = 29;
const MIN_UPDATE: usize = 23;
const MIN_NOTIFICATION: usize = 21;
const ROUTE_REFRESH_LEN: usize = 23;

/// BGP framing for `tokio_util::codec::Framed`, parameterised by the negotiated session.
///
/// Start with [`BgpCodec::default`] (RFC 4271 only) and install the negotiated context with
/// [`BgpCodec::set_context`] once both OPENs are known (`Framed::codec_mut`), before polling
/// the next message: `Framed` decodes one message per poll, so nothing after the OPEN has been
/// decoded with the old context yet.
#[derive(Debug, Clone, Default)]
pub struct BgpCodec {
    ctx: SessionContext,
}

/// One or more already encoded messages (e.g. from [`crate::UpdateBuilder`]), written as-is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessages(pub Bytes);

impl BgpCodec {
    /// A codec for a session with this context.
    pub fn new(ctx: SessionContext) -> Self {
        BgpCodec { ctx }
    }

    /// The context in use.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Installs the negotiated context (after the OPEN exchange).
    pub fn set_context(&mut self, ctx: SessionContext) {
        self.ctx = ctx;
    }
}

/// Checks a header (RFC 4271 §6.1) and returns `(length, type)`.
fn check_header(h: &[u8; HEADER_LEN], ctx: &SessionContext) -> Result<(usize, u8), DecodeError> {
    if h[..16] != MARKER {
        return Err(DecodeError::ConnectionNotSynchronized);
    }
    let length = u16::from_be_bytes([h[16], h[17]]);
    let msg_type = h[18];
    let len = usize::from(length);
    let bad = DecodeError::BadMessageLength { length, msg_type };
    // RFC 8654 §4: OPEN and KEEPALIVE stay within 4096 octets.
    let max = match msg_type {
        msg_type::OPEN | msg_type::KEEPALIVE => MAX_MESSAGE_LEN,
        _ => ctx.max_message_len(),
    };
    if !(HEADER_LEN..=max).contains(&len) {
        return Err(bad);
    }
    let ok = match msg_type {
        msg_type::OPEN => len >= MIN_OPEN,
        msg_type::UPDATE => len >= MIN_UPDATE,
        msg_type::NOTIFICATION => len >= MIN_NOTIFICATION,
        msg_type::KEEPALIVE => len == HEADER_LEN,
        // RFC 5291 ORF entries may follow; they are ignored (ORF is never negotiated).
        msg_type::ROUTE_REFRESH => len >= ROUTE_REFRESH_LEN,
        _ => return Err(DecodeError::BadMessageType { msg_type }),
    };
    if ok { Ok((len, msg_type)) } else { Err(bad) }
}

/// Decodes the first message of `src` if it is complete, consuming it. `Ok(None)` when more
/// bytes are needed (memory reserved is bounded by the 65535-octet maximum).
pub fn decode_frame(
    src: &mut BytesMut,
    ctx: &SessionContext,
) -> Result<Option<Message>, DecodeError> {
    let Some(h) = src
        .get(..HEADER_LEN)
        .and_then(|h| <[u8; HEADER_LEN]>::try_from(h).ok())
    else {
        return Ok(None);
    };
    let (len, t) = check_header(&h, ctx)?;
    if src.len() < len {
        src.reserve(len - src.len());
        return Ok(None);
    }
    let mut frame = src.split_to(len).freeze();
    frame.advance(HEADER_LEN);
    decode_body(t, len, &frame, ctx).map(Some)
}

/// Decodes exactly one whole message (header included); trailing bytes are an error.
pub fn decode_message(msg: &[u8], ctx: &SessionContext) -> Result<Message, DecodeError> {
    let mut buf = BytesMut::from(msg);
    match decode_frame(&mut buf, ctx)? {
        Some(m) if buf.is_empty() => Ok(m),
        // Short or trailing data: the header length disagrees with what was given.
        _ => {
            let length = msg
                .get(16..18)
                .map_or(0, |l| u16::from_be_bytes([l[0], l[1]]));
            let msg_type = msg.get(18).copied().unwrap_or(0);
            Err(DecodeError::BadMessageLength { length, msg_type })
        }
    }
}

fn decode_body(
    t: u8,
    len: usize,
    body: &Bytes,
    ctx: &SessionContext,
) -> Result<Message, DecodeError> {
    Ok(match t {
        msg_type::OPEN => Message::Open(decode_open(body)?),
        msg_type::UPDATE => Message::Update(decode_update(body, ctx)?),
        msg_type::NOTIFICATION => {
            let mut r = Reader::new(body);
            let (Some(code), Some(subcode)) = (r.u8(), r.u8()) else {
                return Err(DecodeError::BadMessageLength {
                    length: len as u16,
                    msg_type: t,
                });
            };
            Message::Notification(Notification {
                code,
                subcode,
                data: body.slice(2..),
            })
        }
        msg_type::KEEPALIVE => Message::Keepalive,
        msg_type::ROUTE_REFRESH => {
            let mut r = Reader::new(body);
            let (Some(afi), Some(subtype), Some(safi)) = (r.u16(), r.u8(), r.u8()) else {
                return Err(DecodeError::BadMessageLength {
                    length: len as u16,
                    msg_type: t,
                });
            };
            // RFC 7313 §5: BoRR and EoRR carry exactly AFI/subtype/SAFI.
            if (subtype == 1 || subtype == 2) && len != ROUTE_REFRESH_LEN {
                // RFC 7313 §5: the NOTIFICATION carries the whole erroneous message.
                let mut message = BytesMut::with_capacity(len);
                message.put_slice(&MARKER);
                message.put_u16(len as u16);
                message.put_u8(t);
                message.put_slice(body);
                return Err(DecodeError::RouteRefreshLength {
                    subtype,
                    length: len as u16,
                    message: message.freeze(),
                });
            }
            Message::RouteRefresh(RouteRefresh {
                family: Family::from_afi_safi(afi, safi),
                subtype,
            })
        }
        _ => return Err(DecodeError::BadMessageType { msg_type: t }),
    })
}

/// Appends one encoded message to `out`. On error `out` is left as it was.
pub fn encode_message(
    msg: &Message,
    ctx: &SessionContext,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_slice(&MARKER);
    out.put_u16(0);
    let max = match msg {
        Message::Open(o) => {
            out.put_u8(msg_type::OPEN);
            encode_open(o, out);
            MAX_MESSAGE_LEN
        }
        Message::Update(u) => {
            out.put_u8(msg_type::UPDATE);
            encode_update(u, ctx, out);
            ctx.max_message_len()
        }
        Message::Notification(n) => {
            out.put_u8(msg_type::NOTIFICATION);
            out.put_u8(n.code);
            out.put_u8(n.subcode);
            out.put_slice(&n.data);
            ctx.max_message_len()
        }
        Message::Keepalive => {
            out.put_u8(msg_type::KEEPALIVE);
            MAX_MESSAGE_LEN
        }
        Message::RouteRefresh(rr) => {
            out.put_u8(msg_type::ROUTE_REFRESH);
            out.put_u16(rr.family.afi());
            out.put_u8(rr.subtype);
            out.put_u8(rr.family.safi());
            ctx.max_message_len()
        }
    };
    let len = out.len() - start;
    if len > max {
        out.truncate(start);
        return Err(EncodeError::TooLong { length: len, max });
    }
    patch_u16(out, start + 16, len);
    Ok(())
}

/// Encodes one message into a new buffer.
pub fn encode_to_bytes(msg: &Message, ctx: &SessionContext) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode_message(msg, ctx, &mut out)?;
    Ok(out.freeze())
}

impl Decoder for BgpCodec {
    type Item = Message;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        decode_frame(src, &self.ctx)
    }
}

impl Encoder<Message> for BgpCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_message(&item, &self.ctx, dst)
    }
}

impl Encoder<&Message> for BgpCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        encode_message(item, &self.ctx, dst)
    }
}

impl Encoder<RawMessages> for BgpCodec {
    type Error = EncodeError;

    fn encode(&mut self, item: RawMessages, dst: &mut BytesMut) -> Result<(), EncodeError> {
        dst.extend_from_slice(&item.0);
        Ok(())
    }
}
