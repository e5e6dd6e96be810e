//! The change stream reader: opens a collection's change stream at a given start point through the
//! official driver and yields events and idle heartbeats, one server round trip at a time.
//!
//! The driver's own resume machinery stays in charge of transient network blips inside one open
//! stream; anything it surfaces is returned to the caller unchanged (the failure policy
//! classifies it).

use std::time::Duration;

use bson::{Bson, Document, RawDocumentBuf};
use mongodb::change_stream::event::ResumeToken;
use mongodb::change_stream::ChangeStream;
use mongodb::options::{FullDocumentBeforeChangeType, FullDocumentType};
use mongodb::Client;

use super::normalize::{token_cluster_time, try_normalize, MalformedEvent};
use crate::event::{ChangeEvent, ClusterTime, Operation, Position};

/// Where to open a stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StartAt {
    /// Strictly after this resume token (the stored checkpoint).
    Token(Document),
    /// Events with cluster time >= this one (operator reset to a time, snapshot hand-over).
    Time(ClusterTime),
    /// From the current end of the oplog.
    Now,
}

/// `fullDocument` mode for update events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum FullDocumentMode {
    #[default]
    UpdateLookup,
    WhenAvailable,
    Required,
}

impl From<crate::config::FullDocument> for FullDocumentMode {
    fn from(f: crate::config::FullDocument) -> Self {
        match f {
            crate::config::FullDocument::UpdateLookup => FullDocumentMode::UpdateLookup,
            crate::config::FullDocument::WhenAvailable => FullDocumentMode::WhenAvailable,
            crate::config::FullDocument::Required => FullDocumentMode::Required,
        }
    }
}

/// How a stream is opened.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOptions {
    pub full_document: FullDocumentMode,
    /// Ask for pre-images (`fullDocumentBeforeChange: whenAvailable`).
    pub pre_images: bool,
    /// How long one getMore may wait for events (the heartbeat period when idle).
    pub max_await: Duration,
    pub batch_size: Option<u32>,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            full_document: FullDocumentMode::UpdateLookup,
            pre_images: false,
            max_await: Duration::from_millis(1000),
            batch_size: None,
        }
    }
}

/// One thing read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceItem {
    Event(Box<ChangeEvent>),
    /// A raw event that could not be normalized; it still has a position so the checkpoint can
    /// move past it once its gap is recorded.
    Malformed {
        raw: Document,
        reason: MalformedEvent,
        position: Option<Position>,
    },
    /// No event arrived; the server's post-batch resume token says how far the stream has read.
    Heartbeat(Position),
}

/// An open change stream on one collection.
pub struct ChangeSource {
    /// Events are taken as raw BSON (their size is known before they are decoded once).
    stream: ChangeStream<RawDocumentBuf>,
    collection: String,
    /// Raw BSON size of the last event read.
    last_bytes: usize,
    /// Where post-images missing under `whenAvailable` are read from (None in other modes).
    lookup: Option<mongodb::Database>,
}

fn token_to_resume(token: &Document) -> Result<ResumeToken, mongodb::error::Error> {
    bson::from_bson::<ResumeToken>(Bson::Document(token.clone()))
        .map_err(|e| mongodb::error::Error::custom(format!("stored resume token is unusable: {e}")))
}

fn resume_to_document(token: &ResumeToken) -> Option<Document> {
    match bson::to_bson(token) {
        Ok(Bson::Document(d)) => Some(d),
        _ => None,
    }
}

impl ChangeSource {
    /// Open the change stream of `database.collection` at `start`.
    pub async fn open(
        client: &Client,
        database: &str,
        collection: &str,
        start: &StartAt,
        options: &StreamOptions,
    ) -> Result<Self, mongodb::error::Error> {
        let coll = client.database(database).collection::<Document>(collection);
        let watch = Self::configure(coll.watch(), start, options)?;
        let stream = watch.await?.with_type::<RawDocumentBuf>();
        Ok(ChangeSource {
            stream,
            collection: collection.to_string(),
            last_bytes: 0,
            lookup: (options.full_document == FullDocumentMode::WhenAvailable)
                .then(|| client.database(database)),
        })
    }

    /// Open ONE database-level change stream over `collections` of `database` (a stream group):
    /// events of every member in oplog order, plus the database-wide events that end it.
    pub async fn open_group(
        client: &Client,
        database: &str,
        collections: &[String],
        start: &StartAt,
        options: &StreamOptions,
    ) -> Result<Self, mongodb::error::Error> {
        let db = client.database(database);
        let filter = bson::doc! {"$match": {"$or": [
            {"ns.coll": {"$in": collections}},
            {"operationType": {"$in": ["dropDatabase", "invalidate"]}},
        ]}};
        let watch = Self::configure(db.watch().pipeline(vec![filter]), start, options)?;
        let stream = watch.await?.with_type::<RawDocumentBuf>();
        Ok(ChangeSource {
            stream,
            collection: database.to_string(),
            last_bytes: 0,
            lookup: (options.full_document == FullDocumentMode::WhenAvailable).then_some(db),
        })
    }

    fn configure<'a, T>(
        mut watch: mongodb::action::Watch<'a, T>,
        start: &StartAt,
        options: &StreamOptions,
    ) -> Result<mongodb::action::Watch<'a, T>, mongodb::error::Error> {
        let full_document = match options.full_document {
            FullDocumentMode::UpdateLookup => FullDocumentType::UpdateLookup,
            FullDocumentMode::WhenAvailable => FullDocumentType::WhenAvailable,
            FullDocumentMode::Required => FullDocumentType::Required,
        };
        watch = watch
            .full_document(full_document)
            .max_await_time(options.max_await);
        if options.pre_images {
            watch = watch.full_document_before_change(FullDocumentBeforeChangeType::WhenAvailable);
        }
        if let Some(n) = options.batch_size {
            watch = watch.batch_size(n);
        }
        Ok(match start {
            StartAt::Token(token) => watch.resume_after(token_to_resume(token)?),
            StartAt::Time(t) => watch.start_at_operation_time(t.to_timestamp()),
            StartAt::Now => watch,
        })
    }

    /// Under `whenAvailable`, an update without a post-image (the collection keeps none) gets the
    /// document as it is now, like `updateLookup` would: a state at or after the event's, labelled
    /// with the event's time. A document already deleted stays without one (mapping decides).
    async fn complete_post_image(
        lookup: Option<mongodb::Database>,
        event: &mut ChangeEvent,
    ) -> Result<(), mongodb::error::Error> {
        let Some(db) = lookup else {
            return Ok(());
        };
        if event.operation != Operation::Update || event.post_image().is_some() {
            return Ok(());
        }
        let Some(key) = event.document_key.clone() else {
            return Ok(());
        };
        event.full_document = db
            .collection::<Document>(&event.collection)
            .find_one(bson::doc! {"_id": key})
            .await?;
        Ok(())
    }

    /// Read the next item: an event if the server has one, otherwise (after at most one await
    /// period) a heartbeat carrying the post-batch resume token.
    pub async fn next(&mut self) -> Result<SourceItem, mongodb::error::Error> {
        let Some(bytes) = self.stream.next_if_any().await? else {
            self.last_bytes = 0;
            return match self.current_position() {
                Some(p) => Ok(SourceItem::Heartbeat(p)),
                None => Err(mongodb::error::Error::custom(
                    "change stream returned no post-batch resume token".to_string(),
                )),
            };
        };
        self.last_bytes = bytes.as_bytes().len();
        let raw = bytes.to_document().map_err(|e| {
            mongodb::error::Error::custom(format!("change event is not valid BSON: {e}"))
        })?;
        drop(bytes);
        Ok(match try_normalize(raw, &self.collection) {
            Ok(mut ev) => {
                Self::complete_post_image(self.lookup.clone(), &mut ev).await?;
                SourceItem::Event(Box::new(ev))
            }
            Err((reason, raw)) => {
                let position = self.current_position();
                SourceItem::Malformed {
                    raw,
                    reason,
                    position,
                }
            }
        })
    }

    /// The raw BSON size of the item `next` returned last (0 for a heartbeat): what the event
    /// weighs against the reader's byte budget.
    pub fn last_bytes(&self) -> usize {
        self.last_bytes
    }

    /// The driver's cached resume token as a position (cluster time decoded from the token).
    pub fn current_position(&self) -> Option<Position> {
        let token = resume_to_document(&self.stream.resume_token()?)?;
        let cluster_time = token_cluster_time(&token)?;
        Some(Position {
            token,
            cluster_time,
        })
    }

    /// False once the server closed the stream (after an invalidate event).
    pub fn is_alive(&self) -> bool {
        self.stream.is_alive()
    }
}
