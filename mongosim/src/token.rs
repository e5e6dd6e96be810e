//! Resume tokens: `{_data: "<upper-case hex>"}` laid out as "82" + 8 hex seconds + 8 hex increment
//! (the cluster time, like a real server's KeyString prefix) + a fixed-width suffix: format version,
//! 16 hex global sequence, 8 hex transaction op index, 2 hex kind. Because every field is fixed
//! width and the cluster time and sequence grow together, `_data` strings sort in stream order.

use bson::{doc, Document, Timestamp};

/// What a token points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// A change event.
    Event = 1,
    /// The invalidate event that follows a drop / rename / dropDatabase.
    Invalidate = 2,
    /// A high-water mark: everything up to and including `seq` has been scanned.
    HighWater = 3,
}

/// A decoded resume token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub time: Timestamp,
    pub seq: u64,
    pub op_index: u32,
    pub kind: TokenKind,
}

const VERSION: &str = "01";
const LEN: usize = 2 + 8 + 8 + 2 + 16 + 8 + 2;

impl Token {
    /// The `_data` string.
    pub(crate) fn data(&self) -> String {
        format!(
            "82{:08X}{:08X}{VERSION}{:016X}{:08X}{:02X}",
            self.time.time, self.time.increment, self.seq, self.op_index, self.kind as u8
        )
    }

    /// The token as the `{_data: ...}` document clients see.
    pub(crate) fn to_doc(self) -> Document {
        doc! { "_data": self.data() }
    }

    /// Decodes a token document; `None` when it was not minted by this simulator.
    pub(crate) fn from_doc(token: &Document) -> Option<Token> {
        let data = token.get_str("_data").ok()?;
        if data.len() != LEN || !data.starts_with("82") || &data[18..20] != VERSION {
            return None;
        }
        let hex32 = |s: &str| u32::from_str_radix(s, 16).ok();
        let kind = match hex32(&data[44..46])? {
            1 => TokenKind::Event,
            2 => TokenKind::Invalidate,
            3 => TokenKind::HighWater,
            _ => return None,
        };
        Some(Token {
            time: Timestamp {
                time: hex32(&data[2..10])?,
                increment: hex32(&data[10..18])?,
            },
            seq: u64::from_str_radix(&data[20..36], 16).ok()?,
            op_index: hex32(&data[36..44])?,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_sort_in_stream_order() {
        let a = Token {
            time: Timestamp {
                time: 1_700_000_000,
                increment: 9,
            },
            seq: 41,
            op_index: 0,
            kind: TokenKind::Event,
        };
        let b = Token {
            seq: 42,
            time: Timestamp {
                time: 1_700_000_000,
                increment: 10,
            },
            ..a
        };
        let hw = Token {
            kind: TokenKind::HighWater,
            ..b
        };
        assert_eq!(Token::from_doc(&a.to_doc()), Some(a));
        assert!(a.data() < b.data() && b.data() < hw.data());
        assert_eq!(&a.data()[..18], "826553F10000000009");
    }
}
