//! A minimal append-only BSON writer for replies whose bulk is already serialized (cursor batches,
//! change events): documents are copied byte for byte instead of being rebuilt, and a stored
//! change event can be extended with extra top-level fields (e.g. `fullDocument`) without
//! decoding it.

use bson::Document;

/// An in-progress BSON document.
pub(crate) struct RawDoc {
    buf: Vec<u8>,
}

impl RawDoc {
    pub(crate) fn with_capacity(n: usize) -> RawDoc {
        let mut buf = Vec::with_capacity(n + 5);
        buf.extend_from_slice(&[0, 0, 0, 0]);
        RawDoc { buf }
    }

    /// Reopens a complete serialized document to append fields to it.
    pub(crate) fn reopen(mut buf: Vec<u8>) -> RawDoc {
        if buf.len() < 5 {
            buf.clear();
            buf.extend_from_slice(&[0, 0, 0, 0]);
        } else {
            buf.pop();
        }
        RawDoc { buf }
    }

    pub(crate) fn f64(&mut self, key: &str, v: f64) {
        self.key(0x01, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn binary(&mut self, key: &str, subtype: u8, bytes: &[u8]) {
        self.key(0x05, key);
        self.buf
            .extend_from_slice(&(bytes.len() as i32).to_le_bytes());
        self.buf.push(subtype);
        self.buf.extend_from_slice(bytes);
    }

    fn key(&mut self, tag: u8, key: &str) {
        self.buf.push(tag);
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn i64(&mut self, key: &str, v: i64) {
        self.key(0x12, key);
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn str(&mut self, key: &str, v: &str) {
        self.key(0x02, key);
        self.buf
            .extend_from_slice(&((v.len() + 1) as i32).to_le_bytes());
        self.buf.extend_from_slice(v.as_bytes());
        self.buf.push(0);
    }

    pub(crate) fn timestamp(&mut self, key: &str, ts: bson::Timestamp) {
        self.key(0x11, key);
        self.buf.extend_from_slice(&ts.increment.to_le_bytes());
        self.buf.extend_from_slice(&ts.time.to_le_bytes());
    }

    pub(crate) fn datetime(&mut self, key: &str, dt: bson::DateTime) {
        self.key(0x09, key);
        self.buf
            .extend_from_slice(&dt.timestamp_millis().to_le_bytes());
    }

    /// Appends any BSON value (common scalar types written directly).
    pub(crate) fn value(&mut self, key: &str, v: &bson::Bson) {
        match v {
            bson::Bson::Int32(i) => {
                self.key(0x10, key);
                self.buf.extend_from_slice(&i.to_le_bytes());
            }
            bson::Bson::Int64(i) => self.i64(key, *i),
            bson::Bson::String(s) => self.str(key, s),
            bson::Bson::ObjectId(o) => {
                self.key(0x07, key);
                self.buf.extend_from_slice(&o.bytes());
            }
            other => {
                let mut one = Document::new();
                one.insert(key, other.clone());
                let mut tmp = Vec::new();
                // Writing an in-memory document into a Vec cannot fail.
                let _ = one.to_writer(&mut tmp);
                self.extend(&tmp);
            }
        }
    }

    /// Appends an embedded document given as serialized bytes.
    pub(crate) fn raw_doc(&mut self, key: &str, bytes: &[u8]) {
        self.key(0x03, key);
        self.buf.extend_from_slice(bytes);
    }

    /// Appends an embedded document.
    pub(crate) fn doc(&mut self, key: &str, doc: &Document) {
        self.key(0x03, key);
        // Writing an in-memory document into a Vec cannot fail.
        let _ = doc.to_writer(&mut self.buf);
    }

    /// Appends every element of a serialized document.
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        if bytes.len() > 5 {
            self.buf.extend_from_slice(&bytes[4..bytes.len() - 1]);
        }
    }

    /// Opens an embedded document; write its fields, then call [`close`](Self::close) with the
    /// returned position.
    pub(crate) fn open(&mut self, key: &str) -> usize {
        self.key(0x03, key);
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        start
    }

    /// Closes an embedded document opened at `start`.
    pub(crate) fn close(&mut self, start: usize) {
        self.buf.push(0);
        let len = (self.buf.len() - start) as i32;
        self.buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// Starts an array; push documents with [`ArrayWriter::push`] and close it with `finish`.
    pub(crate) fn array(&mut self, key: &str) -> ArrayWriter<'_> {
        self.key(0x04, key);
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        ArrayWriter {
            doc: self,
            start,
            count: 0,
        }
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.push(0);
        let len = self.buf.len() as i32;
        self.buf[..4].copy_from_slice(&len.to_le_bytes());
        self.buf
    }
}

/// An open array inside a [`RawDoc`].
pub(crate) struct ArrayWriter<'a> {
    doc: &'a mut RawDoc,
    start: usize,
    count: usize,
}

impl ArrayWriter<'_> {
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let key = self.count.to_string();
        self.doc.raw_doc(&key, bytes);
        self.count += 1;
    }

    pub(crate) fn finish(self) {
        self.doc.buf.push(0);
        let len = (self.doc.buf.len() - self.start) as i32;
        self.doc.buf[self.start..self.start + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Writes into `out` the document `head` followed by extra top-level fields: each an embedded
/// document given as serialized bytes, or null when `None`.
pub(crate) fn extend_document(out: &mut Vec<u8>, head: &[u8], extras: &[(&str, Option<&[u8]>)]) {
    out.clear();
    if head.len() < 5 {
        out.extend_from_slice(&[5, 0, 0, 0, 0]);
        return;
    }
    out.extend_from_slice(&head[..head.len() - 1]);
    for (key, value) in extras {
        match value {
            Some(bytes) => {
                out.push(0x03);
                out.extend_from_slice(key.as_bytes());
                out.push(0);
                out.extend_from_slice(bytes);
            }
            None => {
                out.push(0x0A);
                out.extend_from_slice(key.as_bytes());
                out.push(0);
            }
        }
    }
    out.push(0);
    let len = out.len() as i32;
    out[..4].copy_from_slice(&len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn raw_writer_produces_valid_bson() {
        let inner = {
            let mut b = Vec::new();
            doc! { "a": 1 }.to_writer(&mut b).ok();
            b
        };
        let mut d = RawDoc::with_capacity(64);
        d.i64("id", 7);
        d.str("ns", "db.c");
        let mut arr = d.array("batch");
        arr.push(&inner);
        arr.push(&inner);
        arr.finish();
        let at = d.open("sub");
        d.i64("x", 1);
        d.close(at);
        let parsed = Document::from_reader(d.finish().as_slice()).ok();
        assert_eq!(
            parsed,
            Some(
                doc! { "id": 7i64, "ns": "db.c", "batch": [ { "a": 1 }, { "a": 1 } ], "sub": { "x": 1i64 } }
            )
        );
    }

    #[test]
    fn a_document_is_extended_with_embedded_and_null_fields() {
        let head = {
            let mut b = Vec::new();
            doc! { "_id": 1 }.to_writer(&mut b).ok();
            b
        };
        let full = {
            let mut b = Vec::new();
            doc! { "x": "y" }.to_writer(&mut b).ok();
            b
        };
        let mut out = Vec::new();
        extend_document(&mut out, &head, &[("full", Some(&full)), ("pre", None)]);
        assert_eq!(
            Document::from_reader(out.as_slice()).ok(),
            Some(doc! { "_id": 1, "full": { "x": "y" }, "pre": null })
        );
    }
}
