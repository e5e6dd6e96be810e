//! The naive per-event replicator baseline: the driver's `watch` on `payments`
//! (`fullDocument: updateLookup`) and one autocommit upsert per event into the same reference
//! `payments` table (the buyer looked up by its legacy id in the statement, the template
//! references as external refs, exact amounts as numeric text). Timed like mongo2pg's insert row:
//! from the first `insert_many` until the last row is in Postgres.

use std::time::{Duration, Instant};

use bson::Document;
use futures::TryStreamExt;
use mongodb::options::FullDocumentType;

use crate::common::*;
use crate::support::{self, TestDb};

const UPSERT: &str = "INSERT INTO payments (id, legacy_object_id, source_version, \
     purchase_request_ref_kind, purchase_request_external_ref, \
     seller_offer_ref_kind, seller_offer_external_ref, buyer_id, \
     seller_ref_kind, seller_external_ref, amount, currency, provider, direction, status, \
     provider_payment_id, metadata, is_refunded, created_at, updated_at) \
     VALUES (gen_random_uuid(), $1, $2, 'template', $3, 'template', $4, \
     (SELECT id FROM users WHERE legacy_object_id = $5), 'template', $6, $7::text::numeric, $8, \
     $9::text::payment_provider, $10::text::payment_direction, $11::text::payment_status, $12, \
     $13::jsonb, $14, $15, $16) \
     ON CONFLICT (legacy_object_id) DO UPDATE SET source_version = EXCLUDED.source_version, \
     amount = EXCLUDED.amount, currency = EXCLUDED.currency, provider = EXCLUDED.provider, \
     direction = EXCLUDED.direction, status = EXCLUDED.status, metadata = EXCLUDED.metadata, \
     is_refunded = EXCLUDED.is_refunded, updated_at = EXCLUDED.updated_at \
     WHERE payments.source_version <= EXCLUDED.source_version";

pub async fn run(sim: &mongosim::SimHandle, n: usize) -> BenchResult<Duration> {
    let db = TestDb::create("bench_naive").await;
    db.apply_reference_schema().await;
    let result = run_in(sim, &db.url(), n).await;
    drop(db);
    result
}

async fn run_in(sim: &mongosim::SimHandle, pg_url: &str, n: usize) -> BenchResult<Duration> {
    let mongo_db = mongo_db("naive");
    let mongo = mongodb::Client::with_uri_str(sim.uri()).await?;
    let payments = mongo.database(&mongo_db).collection::<Document>("payments");
    let pg = support::connect(pg_url).await;
    let buyers = buyers();
    for b in &buyers {
        pg.execute(
            "INSERT INTO users (id, legacy_object_id) VALUES (gen_random_uuid(), $1)",
            &[&b.to_hex()],
        )
        .await?;
    }

    let stream = payments
        .watch()
        .full_document(FullDocumentType::UpdateLookup)
        .await?;
    let consumer = tokio::spawn(apply_events(stream, support::connect(pg_url).await));

    let docs: Vec<Document> = (0..n).map(|i| payment_doc(i, &buyers, "naive")).collect();
    let last = oid_of(docs.last().ok_or("no documents")?)?;
    let started = Instant::now();
    insert_chunks(&payments, docs).await?;
    let outcome = wait_for_last(&pg, last, "true", n as i64).await;
    consumer.abort();
    match consumer.await {
        Ok(Err(e)) => return Err(format!("naive replicator failed: {e}").into()),
        Ok(Ok(())) => return Err("naive replicator's change stream ended".into()),
        Err(_) => {}
    }
    Ok(outcome? - started)
}

async fn apply_events(
    mut stream: mongodb::change_stream::ChangeStream<
        mongodb::change_stream::event::ChangeStreamEvent<Document>,
    >,
    pg: tokio_postgres::Client,
) -> BenchResult<()> {
    let upsert = pg.prepare(UPSERT).await?;
    while let Some(event) = stream.try_next().await? {
        let (Some(doc), Some(time)) = (event.full_document, event.cluster_time) else {
            continue;
        };
        let version = ((time.time as i64) << 32) | time.increment as i64;
        let amount = doc.get_document("amount")?;
        let value = match amount.get("value") {
            Some(bson::Bson::Decimal128(d)) => d.to_string(),
            other => return Err(format!("payment amount is not a Decimal128: {other:?}").into()),
        };
        let metadata = serde_json::to_value(doc.get_document("metadata")?)?;
        let buyer = doc.get_object_id("buyerId")?.to_hex();
        pg.execute(
            &upsert,
            &[
                &doc.get_object_id("_id")?.to_hex(),
                &version,
                &doc.get_str("purchaseRequestId")?,
                &doc.get_str("sellerOfferId")?,
                &buyer,
                &doc.get_str("sellerId")?,
                &value,
                &amount.get_str("currency")?,
                &doc.get_str("provider")?,
                &doc.get_str("direction")?,
                &doc.get_str("status")?,
                &doc.get_str("providerPaymentId")?,
                &metadata,
                &doc.get_bool("isRefunded")?,
                &doc.get_datetime("createdAt")?.to_chrono(),
                &doc.get_datetime("updatedAt")?.to_chrono(),
            ],
        )
        .await?;
    }
    Ok(())
}
