//! `multipart/form-data` (RFC 7578 over RFC 2046), read as it arrives:
//! a sans-IO parser fed chunks of the body, giving each part's headers,
//! its content in pieces, and its end, so an upload of any size passes
//! through bounded memory (the content is never held whole here; the
//! caller writes it out and counts it). Strict: CRLF line ends, a
//! boundary of 1-70 permitted characters, at most [`Limits::max_parts`]
//! parts with at most [`Limits::max_header_bytes`] of headers each, every
//! part named by a `Content-Disposition: form-data`, and the closing
//! delimiter required: a body that ends before it is truncated.

use bytes::{Buf, Bytes};

/// What one part says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeaders {
    /// The form field's name.
    pub name: String,
    /// The file name the client gave, if any (as given: the caller
    /// judges it).
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

/// What the parser found in what it was fed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Part(PartHeaders),
    /// The next piece of the current part's content.
    Data(Bytes),
    PartEnd,
    /// The closing delimiter: nothing more is read.
    End,
}

/// How much a body may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_parts: usize,
    pub max_header_bytes: usize,
    /// Preamble before the first boundary.
    pub max_preamble: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_parts: 8,
            max_header_bytes: 8 * 1024,
            max_preamble: 1024,
        }
    }
}

/// Why a body is not acceptable form data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultipartError {
    /// The Content-Type is not multipart/form-data with a valid boundary.
    ContentType(String),
    /// Something other than a delimiter where one must be.
    Delimiter,
    Header(String),
    TooManyParts,
    /// The body ended before the closing delimiter.
    Truncated,
}

impl std::fmt::Display for MultipartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MultipartError::ContentType(why) => write!(f, "Content-Type: {why}"),
            MultipartError::Delimiter => {
                f.write_str("a boundary delimiter is missing or malformed")
            }
            MultipartError::Header(why) => write!(f, "a part's headers: {why}"),
            MultipartError::TooManyParts => f.write_str("too many parts"),
            MultipartError::Truncated => f.write_str("the body ends before its closing boundary"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// After a delimiter: CRLF (a part follows) or `--` (the end).
    AfterDelimiter,
    Headers,
    Body,
    Done,
}

/// The parser of one body.
#[derive(Debug)]
pub struct Parser {
    /// `\r\n--BOUNDARY`.
    delimiter: Vec<u8>,
    /// Finds it (SIMD substring search: a naive search cost several
    /// times the rest of an upload's CPU, bench/README.md).
    finder: memchr::memmem::Finder<'static>,
    limits: Limits,
    state: State,
    buf: Vec<u8>,
    parts: usize,
    /// Bytes of preamble seen.
    preamble: usize,
}

fn bchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"'()+_,-./:=? ".contains(&b)
}

/// The `boundary` parameter of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let bad = |m: &str| MultipartError::ContentType(m.to_owned());
    let (media, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !media.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(bad("not multipart/form-data"));
    }
    let mut found = None;
    for p in params.split(';') {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if found.replace(v.to_owned()).is_some() {
                return Err(bad("boundary given twice"));
            }
        }
    }
    let b = found.ok_or_else(|| bad("no boundary"))?;
    if b.is_empty() || b.len() > 70 || !b.bytes().all(bchar) || b.ends_with(' ') {
        return Err(bad("the boundary is not 1-70 permitted characters"));
    }
    Ok(b)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads a `Content-Disposition: form-data` value's parameters.
fn disposition(value: &str) -> Result<(String, Option<String>), MultipartError> {
    let bad = |m: &str| MultipartError::Header(m.to_owned());
    let mut rest = value.trim();
    let kind_end = rest.find(';').unwrap_or(rest.len());
    if !rest[..kind_end].trim().eq_ignore_ascii_case("form-data") {
        return Err(bad("Content-Disposition is not form-data"));
    }
    rest = &rest[kind_end..];
    let (mut name, mut filename, mut filename_star) = (None, None, None);
    while let Some(r) = rest.strip_prefix(';') {
        let r = r.trim_start();
        let eq = r
            .find('=')
            .ok_or_else(|| bad("a parameter without a value"))?;
        let key = r[..eq].trim().to_ascii_lowercase();
        let after = &r[eq + 1..];
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            // quoted-string, with backslash escapes
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some((_, e)) => v.push(e),
                        None => return Err(bad("an unfinished escape")),
                    },
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or_else(|| bad("an unterminated quoted string"))?;
            (v, q[end..].trim_start())
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        let slot = match key.as_str() {
            "name" => &mut name,
            "filename" => &mut filename,
            "filename*" => &mut filename_star,
            _ => {
                rest = next;
                continue;
            }
        };
        if slot.replace(value).is_some() {
            return Err(bad("a parameter given twice"));
        }
        rest = next;
    }
    if !rest.trim().is_empty() {
        return Err(bad("text after the parameters"));
    }
    let name = name.ok_or_else(|| bad("a part without a name"))?;
    // RFC 5987 `filename*=UTF-8''...` wins over `filename`.
    let filename = match filename_star {
        Some(ext) => Some(ext_value(&ext).ok_or_else(|| bad("filename* is not UTF-8''..."))?),
        None => filename,
    };
    Ok((name, filename))
}

/// An RFC 5987 ext-value in UTF-8.
fn ext_value(v: &str) -> Option<String> {
    let (charset, rest) = v.split_once('\'')?;
    let (_, encoded) = rest.split_once('\'')?;
    if !charset.eq_ignore_ascii_case("utf-8") {
        return None;
    }
    let b = encoded.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn part_headers(block: &[u8]) -> Result<PartHeaders, MultipartError> {
    let bad = |m: &str| MultipartError::Header(m.to_owned());
    let text = std::str::from_utf8(block).map_err(|_| bad("not UTF-8"))?;
    let (mut disp, mut ctype) = (None, None);
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad("a line is not Name: value"))?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("a malformed header name"));
        }
        if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(bad("a control character in a value"));
        }
        let slot = if name.eq_ignore_ascii_case("content-disposition") {
            &mut disp
        } else if name.eq_ignore_ascii_case("content-type") {
            &mut ctype
        } else {
            continue;
        };
        if slot.replace(value.trim().to_owned()).is_some() {
            return Err(bad("a header given twice"));
        }
    }
    let (name, filename) = disposition(&disp.ok_or_else(|| bad("no Content-Disposition"))?)?;
    Ok(PartHeaders {
        name,
        filename,
        content_type: ctype,
    })
}

impl Parser {
    /// A parser for a body of `content_type`.
    pub fn new(content_type: &str, limits: Limits) -> Result<Parser, MultipartError> {
        let b = boundary(content_type)?;
        let delimiter = format!("\r\n--{b}").into_bytes();
        Ok(Parser {
            finder: memchr::memmem::Finder::new(&delimiter).into_owned(),
            delimiter,
            limits,
            state: State::Preamble,
            // The first delimiter may open the body without a CRLF.
            buf: b"\r\n".to_vec(),
            parts: 0,
            preamble: 0,
        })
    }

    /// Whether the closing delimiter has been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads the next chunk of the body; what it completes is added to
    /// `out`. A part's content comes out as slices of the chunks fed
    /// (no copy), apart from the few bytes held back in case they begin a
    /// delimiter.
    pub fn feed(&mut self, chunk: Bytes, out: &mut Vec<Event>) -> Result<(), MultipartError> {
        if self.state == State::Done {
            return Ok(()); // the epilogue is ignored
        }
        let tail = self.delimiter.len() - 1;
        let cur = if self.buf.is_empty() {
            chunk
        } else if self.state == State::Body && chunk.len() >= tail {
            // What was held back is shorter than a delimiter: one that
            // begins in it ends within the chunk's first `tail` bytes.
            let held = self.buf.len();
            self.buf.extend_from_slice(&chunk[..tail]);
            let found = self.finder.find(&self.buf).filter(|at| *at < held);
            let data = &self.buf[..found.unwrap_or(held)];
            if !data.is_empty() {
                out.push(Event::Data(Bytes::copy_from_slice(data)));
            }
            self.buf.clear();
            match found {
                Some(at) => {
                    out.push(Event::PartEnd);
                    self.state = State::AfterDelimiter;
                    chunk.slice(at + self.delimiter.len() - held..)
                }
                None => chunk,
            }
        } else {
            let mut joined = std::mem::take(&mut self.buf);
            joined.extend_from_slice(&chunk);
            Bytes::from(joined)
        };
        self.run(cur, out)
    }

    /// The state machine over `cur`; what may continue in the next chunk
    /// is kept in `buf`.
    fn run(&mut self, mut cur: Bytes, out: &mut Vec<Event>) -> Result<(), MultipartError> {
        let tail = self.delimiter.len() - 1;
        loop {
            match self.state {
                State::Preamble => match self.finder.find(&cur) {
                    Some(at) => {
                        self.preamble += at;
                        if self.preamble > self.limits.max_preamble + 2 {
                            return Err(MultipartError::Delimiter);
                        }
                        cur.advance(at + self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        if cur.len() > tail {
                            let gone = cur.len() - tail;
                            self.preamble += gone;
                            cur.advance(gone);
                        }
                        if self.preamble > self.limits.max_preamble + 2 {
                            return Err(MultipartError::Delimiter);
                        }
                        return self.hold(&cur);
                    }
                },
                State::AfterDelimiter => {
                    // Transport padding (spaces, tabs) may follow.
                    let pad = cur
                        .iter()
                        .take_while(|b| **b == b' ' || **b == b'\t')
                        .count();
                    if pad > 64 {
                        return Err(MultipartError::Delimiter);
                    }
                    let rest = &cur[pad..];
                    if rest.len() < 2 {
                        return self.hold(&cur);
                    }
                    if rest.starts_with(b"--") {
                        self.state = State::Done;
                        out.push(Event::End);
                        return Ok(());
                    }
                    if !rest.starts_with(b"\r\n") {
                        return Err(MultipartError::Delimiter);
                    }
                    cur.advance(pad + 2);
                    self.parts += 1;
                    if self.parts > self.limits.max_parts {
                        return Err(MultipartError::TooManyParts);
                    }
                    self.state = State::Headers;
                }
                State::Headers => {
                    // A part may have no headers at all (then it has no
                    // name, which is refused).
                    let end = if cur.starts_with(b"\r\n") {
                        Some(0)
                    } else {
                        find(&cur, b"\r\n\r\n").map(|e| e + 2)
                    };
                    match end {
                        Some(e) => {
                            if e > self.limits.max_header_bytes {
                                return Err(MultipartError::Header("too long".into()));
                            }
                            let headers = part_headers(&cur[..e])?;
                            cur.advance(e + 2);
                            out.push(Event::Part(headers));
                            self.state = State::Body;
                        }
                        None => {
                            // (Room for the blank line that would end a
                            // block of the largest size.)
                            if cur.len() > self.limits.max_header_bytes + 3 {
                                return Err(MultipartError::Header("too long".into()));
                            }
                            return self.hold(&cur);
                        }
                    }
                }
                State::Body => match self.finder.find(&cur) {
                    Some(at) => {
                        if at > 0 {
                            out.push(Event::Data(cur.split_to(at)));
                        }
                        out.push(Event::PartEnd);
                        cur.advance(self.delimiter.len());
                        self.state = State::AfterDelimiter;
                    }
                    None => {
                        // Everything but what could begin a delimiter.
                        if cur.len() > tail {
                            out.push(Event::Data(cur.split_to(cur.len() - tail)));
                        }
                        return self.hold(&cur);
                    }
                },
                State::Done => return Ok(()),
            }
        }
    }

    /// Keeps `rest` for the next chunk.
    fn hold(&mut self, rest: &[u8]) -> Result<(), MultipartError> {
        self.buf.clear();
        self.buf.extend_from_slice(rest);
        Ok(())
    }

    /// The body has ended: an error unless the closing delimiter was read.
    pub fn finish(&self) -> Result<(), MultipartError> {
        if self.state == State::Done {
            Ok(())
        } else {
            Err(MultipartError::Truncated)
        }
    }
}

#[cfg(test)]
mod tests;
