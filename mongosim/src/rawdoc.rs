//! A minimal append-only BSON writer for replies whose bulk is already serialized (cursor batches,
//! change events): documents are copied byte for byte instead of being rebuilt.

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
        let parsed = Document::from_reader(d.finish().as_slice()).ok();
        assert_eq!(
            parsed,
            Some(doc! { "id": 7i64, "ns": "db.c", "batch": [ { "a": 1 }, { "a": 1 } ] })
        );
    }
}
