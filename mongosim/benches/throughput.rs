//! Throughput benchmark: bulk insert through the official Rust driver (insert_many) and
//! change-stream delivery to one watcher, in documents per second. Run with
//! `cargo bench -p mongosim`; set MONGOSIM_BENCH_DOCS to change the document count.

use bson::{doc, Document};
use futures::StreamExt;
use std::time::{Duration, Instant};

fn sample(i: i64) -> Document {
    doc! {
        "_id": i,
        "customer": format!("customer-{}", i % 1000),
        "amount": (i as f64) * 1.25,
        "currency": "EUR",
        "lines": [ { "sku": "a", "qty": 1 }, { "sku": "b", "qty": 2 } ],
        "meta": { "source": "bench", "version": 3 },
    }
}

async fn run(n: i64) -> Result<(), Box<dyn std::error::Error>> {
    let sim = mongosim::start(mongosim::SimConfig::default()).await?;
    let client = mongodb::Client::with_uri_str(sim.uri()).await?;
    let coll = client.database("bench").collection::<Document>("orders");
    coll.insert_one(doc! { "_id": -1 }).await?;

    let mut stream = coll
        .watch()
        .batch_size(10_000)
        .max_await_time(Duration::from_millis(500))
        .await?;
    let docs: Vec<Document> = (0..n).map(sample).collect();
    let t = Instant::now();
    coll.insert_many(docs).await?;
    let insert = t.elapsed();
    println!(
        "insert_many: {n} documents in {:.3}s = {:.0} docs/s",
        insert.as_secs_f64(),
        n as f64 / insert.as_secs_f64()
    );

    let t = Instant::now();
    let mut seen = 0i64;
    while seen < n {
        match stream.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let deliver = t.elapsed();
    println!(
        "change stream delivery (backlog, one watcher): {seen} events in {:.3}s = {:.0} docs/s",
        deliver.as_secs_f64(),
        seen as f64 / deliver.as_secs_f64()
    );

    let live = coll.clone();
    let mut stream = coll
        .watch()
        .batch_size(10_000)
        .max_await_time(Duration::from_millis(500))
        .await?;
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        for chunk in 0..10i64 {
            let docs: Vec<Document> = (0..n / 10)
                .map(|i| sample(n + chunk * (n / 10) + i))
                .collect();
            live.insert_many(docs).await?;
        }
        Ok::<_, mongodb::error::Error>(())
    });
    let mut seen = 0i64;
    while seen < n / 10 * 10 {
        match stream.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    writer.await??;
    let both = t.elapsed();
    println!(
        "concurrent insert_many + watch: {seen} documents end to end in {:.3}s = {:.0} docs/s",
        both.as_secs_f64(),
        seen as f64 / both.as_secs_f64()
    );
    sim.shutdown().await;
    Ok(())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: i64 = std::env::var("MONGOSIM_BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(n)) {
        eprintln!("benchmark failed: {e}");
        std::process::exit(1);
    }
}
