//! Property: a snapshot stopped after any number of pages, with any page size and any number of
//! page writers, and then resumed copies every document exactly once across its runs and ends
//! with Postgres equal to MongoDB.

use crate::support::shop::{user_doc, Env};
use mongo2pg::config::SnapshotMode;
use mongo2pg::snapshot::{prepare_stream, SnapshotContext, SnapshotOptions};
use proptest::prelude::*;

async fn stop_and_resume(docs: u32, page_size: u32, stop_after: u64, writers: usize) {
    let env = Env::start("snap_prop").await;
    if docs > 0 {
        env.coll("users")
            .insert_many((0..docs).map(user_doc))
            .await
            .expect("seed");
    }
    let stopped = SnapshotOptions {
        page_size,
        max_pages: Some(stop_after),
        writers,
        ..SnapshotOptions::default()
    };
    let first = env.snapshot("users", &stopped).await;
    let pages_needed = u64::from(docs.div_ceil(page_size));
    assert_eq!(
        first.complete,
        stop_after > pages_needed,
        "first run: {first:?}"
    );

    // What the supervisor does next: copy again only if the copy is unfinished.
    let mut pg = env.connect().await;
    let mut sink = env.sink();
    let url = env.pg_url();
    let ctx = SnapshotContext {
        mongo: &env.mongo,
        database: &env.database,
        pg: &mut pg,
        sink: &mut sink,
        names: &env.names,
        pg_url: Some(&url),
    };
    let options = SnapshotOptions {
        page_size,
        writers,
        ..SnapshotOptions::default()
    };
    let second = prepare_stream(
        ctx,
        SnapshotMode::Initial,
        env.rules("users"),
        &options,
        &mut |_| {},
    )
    .await
    .expect("prepare");
    assert_eq!(second.is_none(), first.complete);
    let copied_again = second.as_ref().map_or(0, |r| r.copied);
    assert_eq!(
        first.copied + copied_again,
        u64::from(docs),
        "{first:?} {second:?}"
    );
    if let Some(second) = &second {
        assert_eq!(second.resumed_after.is_some(), first.copied > 0);
        assert!(second.handed_over);
    }
    let report = env.verify(&["users"], &[]).await;
    assert!(report.clean, "{report:#?}");
    assert_eq!(report.collections[0].postgres_rows, u64::from(docs));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, ..ProptestConfig::default() })]
    #[test]
    fn a_snapshot_stopped_anywhere_resumes_and_copies_each_document_once(
        docs in 0u32..40,
        page_size in 1u32..9,
        stop_after in 0u64..6,
        writers in 1usize..4,
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
        rt.block_on(stop_and_resume(docs, page_size, stop_after, writers));
    }
}
