//! The echo server's HTTP/1.1 request head parser: pure, bounded, and strict where RFC 9112
//! tells a server to reject (a malformed head is a 400, never a guess).
//!
//! Only what the echo server needs: the request line, `Host`, `Content-Length` (a body is read
//! and discarded), `Transfer-Encoding` (refused: the server does not decode chunked bodies),
//! and `Connection`. Lines may end in CRLF or a bare LF (RFC 9112 §2.2 lets a recipient accept
//! LF; `nc` users send it).

/// The largest request head accepted (request line and headers).
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header fields accepted.
pub const MAX_HEADERS: usize = 64;

/// The largest request body accepted (it is read and thrown away).
pub const MAX_BODY: u64 = 1 << 20;

/// The protocol version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: the connection closes after the response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1: the connection stays open unless `Connection: close`.
    Http11,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method (`GET`, `HEAD`, ...): any token.
    pub method: String,
    /// The path of the target (origin form, or the path of an absolute-form target), without
    /// the query.
    pub path: String,
    /// The query string after `?`, if any.
    pub query: Option<String>,
    /// The protocol version.
    pub version: Version,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// The body length to read and discard.
    pub content_length: u64,
}

impl Request {
    /// Whether this is a `HEAD` request (headers only in the response).
    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Why a head was rejected, with the status to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Syntax or semantics the RFC says to reject with 400.
    #[error("bad request: {0}")]
    Bad(&'static str),
    /// The head is longer than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] fields (431).
    #[error("request header fields too large")]
    TooLarge,
    /// The body is longer than [`MAX_BODY`] (413).
    #[error("content too large")]
    BodyTooLarge,
    /// A `Transfer-Encoding` the server does not decode (501).
    #[error("transfer-encoding not implemented")]
    TransferEncoding,
    /// An HTTP version other than 1.0 and 1.1 (505).
    #[error("HTTP version not supported")]
    Version,
}

impl HeadError {
    /// The status code and reason phrase to answer with.
    pub fn status(&self) -> (u16, &'static str) {
        match self {
            Self::Bad(_) => (400, "Bad Request"),
            Self::TooLarge => (431, "Request Header Fields Too Large"),
            Self::BodyTooLarge => (413, "Content Too Large"),
            Self::TransferEncoding => (501, "Not Implemented"),
            Self::Version => (505, "HTTP Version Not Supported"),
        }
    }
}

/// The length of the head at the start of `buf` (through the empty line that ends it), or
/// `None` if it has not all arrived yet.
pub fn head_len(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    for (i, b) in buf.iter().enumerate() {
        if *b != b'\n' {
            continue;
        }
        let line = buf.get(start..i).unwrap_or_default();
        if line.is_empty() || line == b"\r" {
            // RFC 9112 §2.2: empty lines before the request line are ignored; the head is
            // the first non-empty line onward, so only an empty line after one ends it.
            if buf
                .get(..start)
                .is_some_and(|b| b.iter().any(|c| !c.is_ascii_whitespace()))
            {
                return Some(i + 1);
            }
        }
        start = i + 1;
    }
    None
}

/// RFC 9110 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|c| is_tchar(*c))
}

/// Parses a complete head (as delimited by [`head_len`]).
pub fn parse_head(head: &[u8]) -> Result<Request, HeadError> {
    if head.len() > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let mut lines = head
        .split(|c| *c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .skip_while(|l| l.is_empty());
    let request_line = lines.next().ok_or(HeadError::Bad("no request line"))?;
    let mut parts = request_line.split(|c| *c == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad(
            "the request line is not METHOD SP TARGET SP VERSION",
        ));
    };
    if !is_token(method) {
        return Err(HeadError::Bad("the method is not a token"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        v if v.starts_with(b"HTTP/")
            && v.len() == 8
            && v.get(5).is_some_and(u8::is_ascii_digit)
            && v.get(6) == Some(&b'.')
            && v.get(7).is_some_and(u8::is_ascii_digit) =>
        {
            return Err(HeadError::Version);
        }
        _ => return Err(HeadError::Bad("the version is not HTTP/x.y")),
    };
    let (path, query) = parse_target(method, target)?;

    let mut host = 0usize;
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut close = false;
    let mut keep = false;
    let mut count = 0usize;
    for line in lines {
        if line.is_empty() {
            break;
        }
        count += 1;
        if count > MAX_HEADERS {
            return Err(HeadError::TooLarge);
        }
        if line.first().is_some_and(|c| *c == b' ' || *c == b'\t') {
            return Err(HeadError::Bad("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|c| *c == b':')
            .ok_or(HeadError::Bad("a header line without ':'"))?;
        let (name, rest) = line.split_at(colon);
        if !is_token(name) {
            return Err(HeadError::Bad("a header name is not a token"));
        }
        let value = rest.get(1..).unwrap_or_default().trim_ascii();
        if value.iter().any(|c| c.is_ascii_control() && *c != b'\t') {
            return Err(HeadError::Bad("a control character in a header value"));
        }
        if name.eq_ignore_ascii_case(b"host") {
            host += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // A list of identical values is allowed (RFC 9112 §6.3); anything else is not.
            for v in value.split(|c| *c == b',').map(<[u8]>::trim_ascii) {
                let n = parse_u64(v).ok_or(HeadError::Bad("Content-Length is not a number"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::Bad("conflicting Content-Length values"));
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            transfer_encoding = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in value.split(|c| *c == b',').map(<[u8]>::trim_ascii) {
                close |= t.eq_ignore_ascii_case(b"close");
                keep |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    if transfer_encoding {
        return Err(HeadError::TransferEncoding);
    }
    // RFC 9112 §3.2: a 1.1 request without exactly one Host is a 400.
    if version == Version::Http11 && host != 1 {
        return Err(HeadError::Bad("HTTP/1.1 needs exactly one Host header"));
    }
    if host > 1 {
        return Err(HeadError::Bad("more than one Host header"));
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY {
        return Err(HeadError::BodyTooLarge);
    }
    let keep_alive = match version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    };
    Ok(Request {
        method: ascii(method),
        path,
        query,
        version,
        keep_alive,
        content_length,
    })
}

/// `1*DIGIT` as a u64, `None` if empty, not digits, or too large.
fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Bytes already checked to be ASCII (tokens, targets) as a String.
fn ascii(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// The path and query of a request target: origin form (`/p?q`), absolute form
/// (`http://host/p?q`), or `*` for OPTIONS.
fn parse_target(method: &[u8], target: &[u8]) -> Result<(String, Option<String>), HeadError> {
    if target.is_empty() {
        return Err(HeadError::Bad("empty request target"));
    }
    if target
        .iter()
        .any(|c| !c.is_ascii_graphic() || *c == b'#' || *c == b'\\')
    {
        return Err(HeadError::Bad("invalid character in the request target"));
    }
    if target == b"*" {
        return if method == b"OPTIONS" {
            Ok(("*".into(), None))
        } else {
            Err(HeadError::Bad("'*' is a target for OPTIONS only"))
        };
    }
    let origin = if target.first() == Some(&b'/') {
        target
    } else {
        let lower = target.to_ascii_lowercase();
        let rest_at = if lower.starts_with(b"http://") {
            7
        } else if lower.starts_with(b"https://") {
            8
        } else {
            return Err(HeadError::Bad(
                "the request target is neither /path nor http://host/path",
            ));
        };
        let rest = target.get(rest_at..).unwrap_or_default();
        let host_end = rest
            .iter()
            .position(|c| *c == b'/' || *c == b'?')
            .unwrap_or(rest.len());
        if host_end == 0 {
            return Err(HeadError::Bad("absolute target without a host"));
        }
        let after = rest.get(host_end..).unwrap_or_default();
        match after.first() {
            None => b"/",
            Some(b'?') => return Ok(("/".into(), after.get(1..).map(ascii))),
            Some(_) => after,
        }
    };
    Ok(match origin.iter().position(|c| *c == b'?') {
        Some(q) => (
            ascii(origin.get(..q).unwrap_or_default()),
            origin.get(q + 1..).map(ascii),
        ),
        None => (ascii(origin), None),
    })
}

/// `/stream` parameters: how many bytes, in chunks of what size, how far apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamParams {
    /// The body length.
    pub bytes: u64,
    /// Bytes per write.
    pub chunk: usize,
    /// Pause after each chunk, in milliseconds.
    pub interval_ms: u64,
}

/// The most `/stream` sends (1 GiB).
pub const MAX_STREAM_BYTES: u64 = 1 << 30;
/// The largest `/stream` chunk.
pub const MAX_STREAM_CHUNK: usize = 1 << 20;
/// The longest pause between `/stream` chunks.
pub const MAX_STREAM_INTERVAL_MS: u64 = 60_000;

/// Parses `/stream`'s query: `bytes=N` (required), `chunk=C` (default 1000, 1..=1 MiB) and
/// `interval_ms=D` (default 100, at most 60000). Unknown or repeated keys are errors.
pub fn parse_stream_query(query: Option<&str>) -> Result<StreamParams, &'static str> {
    let (mut bytes, mut chunk, mut interval) = (None, None, None);
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').ok_or("a query item without '='")?;
        let n = parse_u64(v.as_bytes()).ok_or("a query value is not a number")?;
        let slot = match k {
            "bytes" => &mut bytes,
            "chunk" => &mut chunk,
            "interval_ms" => &mut interval,
            _ => return Err("unknown query key (bytes, chunk, interval_ms)"),
        };
        if slot.replace(n).is_some() {
            return Err("a query key is given twice");
        }
    }
    let bytes = bytes.ok_or("bytes=N is required")?;
    if bytes > MAX_STREAM_BYTES {
        return Err("bytes is larger than 1 GiB");
    }
    let chunk = usize::try_from(chunk.unwrap_or(1000))
        .ok()
        .filter(|c| (1..=MAX_STREAM_CHUNK).contains(c))
        .ok_or("chunk must be 1..=1048576")?;
    let interval_ms = interval.unwrap_or(100);
    if interval_ms > MAX_STREAM_INTERVAL_MS {
        return Err("interval_ms must be at most 60000");
    }
    Ok(StreamParams {
        bytes,
        chunk,
        interval_ms,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Request {
        let b = s.as_bytes();
        let n = head_len(b).unwrap_or_else(|| panic!("incomplete: {s:?}"));
        parse_head(b.get(..n).unwrap()).unwrap()
    }

    fn bad(s: &str) -> HeadError {
        let b = s.as_bytes();
        let n = head_len(b).unwrap_or(b.len());
        parse_head(b.get(..n).unwrap()).unwrap_err()
    }

    #[test]
    fn head_length() {
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY"), Some(27));
        assert_eq!(head_len(b"GET / HTTP/1.1\nHost: x\n\nBODY"), Some(24));
        assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_len(b""), None);
        // Leading empty lines do not end an (absent) head.
        assert_eq!(head_len(b"\r\n\r\n"), None);
        assert_eq!(head_len(b"\r\nGET / HTTP/1.0\r\n\r\n"), Some(20));
    }

    #[test]
    fn good_requests() {
        let r =
            ok("GET / HTTP/1.1\r\nHost: 10.1.1.11\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n");
        assert_eq!(
            r,
            Request {
                method: "GET".into(),
                path: "/".into(),
                query: None,
                version: Version::Http11,
                keep_alive: true,
                content_length: 0
            }
        );
        let r = ok("HEAD /a/b?x=1&y HTTP/1.1\nhost: h\nConnection: Close\n\n");
        assert!(r.is_head());
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            ("/a/b", Some("x=1&y"))
        );
        assert!(!r.keep_alive);
        let r = ok("GET / HTTP/1.0\r\n\r\n");
        assert_eq!((r.version, r.keep_alive), (Version::Http10, false));
        let r = ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert!(r.keep_alive);
        let r = ok("POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n");
        assert_eq!(r.content_length, 5);
        let r = ok("GET http://h:80/stream?bytes=3 HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            (r.path.as_str(), r.query.as_deref()),
            ("/stream", Some("bytes=3"))
        );
        let r = ok("GET http://h HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "/");
        let r = ok("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((r.path.as_str(), r.query.as_deref()), ("/", Some("q")));
        let r = ok("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(r.path, "*");
        let r = ok("\r\nGET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\n\r\n");
        assert_eq!(r.method, "GET");
    }

    #[test]
    fn bad_requests() {
        for (s, want) in [
            (
                "GARBAGE\r\n\r\n",
                HeadError::Bad("the request line is not METHOD SP TARGET SP VERSION"),
            ),
            (
                "GET /\r\n\r\n",
                HeadError::Bad("the request line is not METHOD SP TARGET SP VERSION"),
            ),
            (
                "GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("the request line is not METHOD SP TARGET SP VERSION"),
            ),
            (
                "GET / HTTP/1.1 x\r\nHost: h\r\n\r\n",
                HeadError::Bad("the request line is not METHOD SP TARGET SP VERSION"),
            ),
            (
                "G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("the method is not a token"),
            ),
            (
                "GET / HTTX/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("the version is not HTTP/x.y"),
            ),
            ("GET / HTTP/2.0\r\nHost: h\r\n\r\n", HeadError::Version),
            (
                "GET x HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("the request target is neither /path nor http://host/path"),
            ),
            (
                "GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("invalid character in the request target"),
            ),
            (
                "GET /é HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("invalid character in the request target"),
            ),
            (
                "GET * HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("'*' is a target for OPTIONS only"),
            ),
            (
                "GET http:// HTTP/1.1\r\nHost: h\r\n\r\n",
                HeadError::Bad("absolute target without a host"),
            ),
            (
                "GET / HTTP/1.1\r\n\r\n",
                HeadError::Bad("HTTP/1.1 needs exactly one Host header"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                HeadError::Bad("HTTP/1.1 needs exactly one Host header"),
            ),
            (
                "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                HeadError::Bad("more than one Host header"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n",
                HeadError::Bad("a header line without ':'"),
            ),
            (
                "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
                HeadError::Bad("a header name is not a token"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",
                HeadError::Bad("obsolete line folding"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n",
                HeadError::Bad("a control character in a header value"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: x\r\n\r\n",
                HeadError::Bad("Content-Length is not a number"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
                HeadError::Bad("Content-Length is not a number"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                HeadError::Bad("Content-Length is not a number"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                HeadError::Bad("conflicting Content-Length values"),
            ),
            (
                "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1048577\r\n\r\n",
                HeadError::BodyTooLarge,
            ),
            (
                "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                HeadError::TransferEncoding,
            ),
        ] {
            assert_eq!(bad(s), want, "{s:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            bad(&format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n")),
            HeadError::TooLarge
        );
        let long = "a".repeat(MAX_HEAD);
        assert_eq!(
            bad(&format!("GET /{long} HTTP/1.1\r\nHost: h\r\n\r\n")),
            HeadError::TooLarge
        );
        assert_eq!(bad("").status().0, 400);
        assert_eq!(HeadError::TooLarge.status().0, 431);
    }

    #[test]
    fn stream_queries() {
        assert_eq!(
            parse_stream_query(Some("bytes=10")),
            Ok(StreamParams {
                bytes: 10,
                chunk: 1000,
                interval_ms: 100
            })
        );
        assert_eq!(
            parse_stream_query(Some("interval_ms=0&chunk=7&bytes=0")),
            Ok(StreamParams {
                bytes: 0,
                chunk: 7,
                interval_ms: 0
            })
        );
        for q in [
            None,
            Some(""),
            Some("bytes"),
            Some("bytes=x"),
            Some("bytes=-1"),
            Some("bytes=1&bytes=2"),
            Some("bytes=1&other=2"),
            Some("bytes=1073741825"),
            Some("bytes=1&chunk=0"),
            Some("bytes=1&chunk=1048577"),
            Some("bytes=1&interval_ms=60001"),
        ] {
            assert!(parse_stream_query(q).is_err(), "{q:?}");
        }
    }

    /// Every prefix and every single-byte corruption of a good head either parses or is an
    /// error; none panics.
    #[test]
    fn no_panics_on_mangled_heads() {
        let good = b"GET http://h:80/stream?bytes=3 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        for n in 0..=good.len() {
            let p = good.get(..n).unwrap();
            let _ = head_len(p);
            let _ = parse_head(p);
        }
        for i in 0..good.len() {
            for b in [0u8, b' ', b'\r', b'\n', b':', b'?', b'/', 0xff] {
                let mut m = good.to_vec();
                if let Some(x) = m.get_mut(i) {
                    *x = b;
                }
                if let Some(n) = head_len(&m) {
                    let _ = parse_head(m.get(..n).unwrap());
                }
                let _ = parse_head(&m);
            }
        }
    }
}
