//! Wire framing: reads OP_MSG and legacy OP_QUERY requests (merging OP_MSG document sequences into
//! the command body, skipping a trailing checksum) and encodes OP_MSG / OP_REPLY replies with the
//! request's id in `responseTo`. It knows nothing about commands.

use bson::{Bson, Document};
use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt};

pub(crate) const OP_REPLY: i32 = 1;
pub(crate) const OP_QUERY: i32 = 2004;
pub(crate) const OP_COMPRESSED: i32 = 2012;
pub(crate) const OP_MSG: i32 = 2013;
/// Largest message accepted (matches the advertised maxMessageSizeBytes).
pub(crate) const MAX_MESSAGE: usize = 48_000_000;

const CHECKSUM_PRESENT: u32 = 1;
const MORE_TO_COME: u32 = 1 << 1;

/// One decoded request.
#[derive(Debug)]
pub(crate) struct Request {
    pub request_id: i32,
    pub legacy: bool,
    /// The client asked for no reply (OP_MSG moreToCome).
    pub no_reply: bool,
    pub body: Document,
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_i32(buf: &[u8], at: usize) -> io::Result<i32> {
    buf.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(i32::from_le_bytes)
        .ok_or_else(|| bad("truncated message"))
}

fn read_doc(buf: &[u8], at: usize) -> io::Result<(Document, usize)> {
    let len = usize::try_from(read_i32(buf, at)?).map_err(|_| bad("negative document length"))?;
    let slice = buf
        .get(at..at + len)
        .ok_or_else(|| bad("document overruns message"))?;
    let doc = Document::from_reader(slice).map_err(|e| bad(format!("invalid BSON: {e}")))?;
    Ok((doc, at + len))
}

fn cstring(buf: &[u8], at: usize) -> io::Result<(String, usize)> {
    let end = buf[at..]
        .iter()
        .position(|b| *b == 0)
        .ok_or_else(|| bad("unterminated cstring"))?
        + at;
    let s = std::str::from_utf8(&buf[at..end]).map_err(|_| bad("cstring is not UTF-8"))?;
    Ok((s.to_owned(), end + 1))
}

fn parse_op_msg(request_id: i32, body: &[u8]) -> io::Result<Request> {
    let flags = read_i32(body, 0)? as u32;
    if flags & 0xFFFF & !(CHECKSUM_PRESENT | MORE_TO_COME) != 0 {
        return Err(bad("unknown required OP_MSG flag bits"));
    }
    let end = if flags & CHECKSUM_PRESENT != 0 {
        body.len().saturating_sub(4)
    } else {
        body.len()
    };
    let mut at = 4;
    let mut main: Option<Document> = None;
    let mut sequences: Vec<(String, Vec<Bson>)> = Vec::new();
    while at < end {
        let kind = body[at];
        at += 1;
        match kind {
            0 => {
                let (d, next) = read_doc(body, at)?;
                main = Some(d);
                at = next;
            }
            1 => {
                let size = usize::try_from(read_i32(body, at)?)
                    .map_err(|_| bad("negative section size"))?;
                let section_end = at + size;
                let (ident, mut p) = cstring(body, at + 4)?;
                let mut docs = Vec::new();
                while p < section_end {
                    let (d, next) = read_doc(body, p)?;
                    docs.push(Bson::Document(d));
                    p = next;
                }
                sequences.push((ident, docs));
                at = section_end;
            }
            other => return Err(bad(format!("unknown OP_MSG section kind {other}"))),
        }
    }
    let mut doc = main.ok_or_else(|| bad("OP_MSG without a body section"))?;
    for (ident, docs) in sequences {
        doc.insert(ident, Bson::Array(docs));
    }
    Ok(Request {
        request_id,
        legacy: false,
        no_reply: flags & MORE_TO_COME != 0,
        body: doc,
    })
}

fn parse_op_query(request_id: i32, body: &[u8]) -> io::Result<Request> {
    let (collection, at) = cstring(body, 4)?;
    let (mut query, _) = read_doc(body, at + 8)?;
    if let Some(Bson::Document(inner)) = query.get("$query").or_else(|| query.get("query")) {
        let inner = inner.clone();
        if let Some(rp) = query.get("$readPreference").cloned() {
            query = inner;
            query.insert("$readPreference", rp);
        } else {
            query = inner;
        }
    }
    if !query.contains_key("$db") {
        let db = collection.split('.').next().unwrap_or("admin").to_owned();
        query.insert("$db", db);
    }
    Ok(Request {
        request_id,
        legacy: true,
        no_reply: false,
        body: query,
    })
}

/// Reads one request; `Ok(None)` on a clean end of stream.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    scratch: &mut Vec<u8>,
) -> io::Result<Option<Request>> {
    let mut header = [0u8; 16];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = read_i32(&header, 0)?;
    let request_id = read_i32(&header, 4)?;
    let op_code = read_i32(&header, 12)?;
    let len = usize::try_from(len).map_err(|_| bad("negative message length"))?;
    if !(16..=MAX_MESSAGE).contains(&len) {
        return Err(bad(format!("message length {len} out of range")));
    }
    scratch.clear();
    scratch.resize(len - 16, 0);
    reader.read_exact(scratch).await?;
    match op_code {
        OP_MSG => parse_op_msg(request_id, scratch).map(Some),
        OP_QUERY => parse_op_query(request_id, scratch).map(Some),
        OP_COMPRESSED => Err(bad("compression was not negotiated")),
        other => Err(bad(format!("unsupported opcode {other}"))),
    }
}

static NEXT_ID: AtomicI32 = AtomicI32::new(1);

fn header(out: &mut Vec<u8>, len: usize, response_to: i32, op: i32) {
    out.extend_from_slice(&(len as i32).to_le_bytes());
    out.extend_from_slice(&NEXT_ID.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    out.extend_from_slice(&response_to.to_le_bytes());
    out.extend_from_slice(&op.to_le_bytes());
}

/// The frame header (and OP_MSG flags / OP_REPLY prefix) for a reply body of `body_len` bytes
/// to the request with id `request_id`; the body follows it on the wire unchanged.
pub(crate) fn reply_header(request_id: i32, legacy: bool, body_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    if legacy {
        header(&mut out, 16 + 20 + body_len, request_id, OP_REPLY);
        out.extend_from_slice(&8i32.to_le_bytes());
        out.extend_from_slice(&0i64.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&1i32.to_le_bytes());
    } else {
        header(&mut out, 16 + 5 + body_len, request_id, OP_MSG);
        out.extend_from_slice(&0u32.to_le_bytes());
        out.push(0);
    }
    out
}
