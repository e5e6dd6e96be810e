//! mongosim benchmark: runs the `mongosim` binary as a child process and drives it with the
//! official Rust driver, so the simulator's own CPU time (summed over its threads from
//! `/proc/<pid>/task/*/schedstat`) and memory (`VmRSS` / `VmHWM`) are measured apart from the
//! driver's. Every figure is printed next to a baseline measured in the same run:
//!
//! - paging 200k documents by `_id` range + sort + limit against one cursor over the same documents,
//!   and the snapshot's resume query (`$or` of an `_id` range and a `$type` list) against both;
//! - `$in` lookups by `_id` against the one-cursor read rate;
//! - change-stream fan-out: simulator CPU per update with 0, 1 and 8 watchers, and the CPU one
//!   event costs per watcher;
//! - resident memory per stored raw BSON byte (small history window), and with the default window;
//! - bulk insert and change-stream delivery throughput.
//!
//! Run with `cargo bench -p mongosim`; `MONGOSIM_BENCH_DOCS` (default 200000),
//! `MONGOSIM_BENCH_IN_QUERIES` (default 200) and `MONGOSIM_BENCH_UPDATES` (default 3000) change
//! the sizes. It measures; it asserts nothing about speed.

use bson::{doc, oid::ObjectId, Bson, DateTime, Decimal128, Document, RawDocumentBuf};
use futures::{StreamExt, TryStreamExt};
use mongodb::{Client, Collection};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A mongosim child process.
struct SimProcess {
    child: Child,
    uri: String,
}

impl SimProcess {
    fn spawn(window: usize) -> BenchResult<SimProcess> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mongosim"))
            .args(["--port", "0", "--window", &window.to_string()])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        // "mongosim listening on 127.0.0.1:PORT (mongodb://...)"
        let addr = line
            .split_whitespace()
            .nth(3)
            .ok_or_else(|| format!("unexpected first line: {line:?}"))?
            .to_owned();
        Ok(SimProcess {
            child,
            uri: format!("mongodb://{addr}/?directConnection=true"),
        })
    }

    fn status_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with(field))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(0)
    }

    fn rss_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    fn hwm_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// CPU time of every thread of the process, in seconds.
    fn cpu_seconds(&self) -> f64 {
        let dir = format!("/proc/{}/task", self.child.id());
        let Ok(tasks) = std::fs::read_dir(dir) else {
            return 0.0;
        };
        let mut ns = 0u64;
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("schedstat")) {
                ns += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        ns as f64 / 1e9
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A payment-like document (~300 bytes of BSON).
fn payment(i: i64) -> Document {
    let amount = format!("{}.{:02}", 10 + i % 5000, i % 100);
    doc! {
        "_id": ObjectId::new(),
        "seq": i,
        "user_id": ObjectId::new(),
        "amount": Decimal128::from_str(&amount).unwrap_or_else(|_| Decimal128::from_bytes([0; 16])),
        "currency": "EUR",
        "status": if i % 10 == 0 { "refunded" } else { "captured" },
        "method": { "type": "card", "brand": "visa", "last4": format!("{:04}", i % 10_000) },
        "created_at": DateTime::from_millis(1_700_000_000_000 + i * 1000),
        "reference": format!("PAY-{i:012}"),
        "lines": [ { "sku": "a", "qty": 1 }, { "sku": "b", "qty": 2 } ],
    }
}

fn raw_size(d: &Document) -> usize {
    let mut b = Vec::new();
    let _ = d.to_writer(&mut b);
    b.len()
}

/// One row of the result table.
struct Row {
    what: String,
    value: String,
    baseline: String,
    ratio: String,
}

fn row(what: &str, value: String, baseline: String, ratio: f64) -> Row {
    eprintln!("measured: {what}: {value}");
    Row {
        what: what.to_owned(),
        value,
        baseline,
        ratio: format!("{ratio:.2}"),
    }
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1024.0 * 1024.0))
}

async fn load(coll: &Collection<Document>, n: i64) -> BenchResult<(Vec<ObjectId>, usize, f64)> {
    let mut ids = Vec::with_capacity(n as usize);
    let mut bytes = 0usize;
    let mut elapsed = Duration::ZERO;
    let chunk = 10_000i64;
    let mut start = 0i64;
    while start < n {
        let docs: Vec<Document> = (start..(start + chunk).min(n)).map(payment).collect();
        for d in &docs {
            bytes += raw_size(d);
            if let Ok(id) = d.get_object_id("_id") {
                ids.push(id);
            }
        }
        let t = Instant::now();
        coll.insert_many(docs).await?;
        elapsed += t.elapsed();
        start += chunk;
    }
    Ok((ids, bytes, n as f64 / elapsed.as_secs_f64()))
}

/// Reads every document through one cursor sorted by `_id`; returns (seconds, sim cpu seconds).
async fn one_cursor(
    sim: &SimProcess,
    coll: &Collection<RawDocumentBuf>,
    filter: Document,
    batch: u32,
    expect: usize,
) -> BenchResult<(f64, f64)> {
    let cpu = sim.cpu_seconds();
    let t = Instant::now();
    let mut cursor = coll
        .find(filter)
        .sort(doc! { "_id": 1 })
        .batch_size(batch)
        .await?;
    let mut n = 0usize;
    while cursor.advance().await? {
        n += 1;
    }
    let secs = t.elapsed().as_secs_f64();
    if n != expect {
        return Err(format!("cursor returned {n} documents, expected {expect}").into());
    }
    Ok((secs, sim.cpu_seconds() - cpu))
}

/// Reads every document page by page with `{_id: {$gt: last}}` + sort + limit.
async fn paged(
    sim: &SimProcess,
    coll: &Collection<RawDocumentBuf>,
    page: i64,
    expect: usize,
) -> BenchResult<(f64, f64)> {
    let cpu = sim.cpu_seconds();
    let t = Instant::now();
    let mut last: Option<Bson> = None;
    let mut n = 0usize;
    loop {
        let filter = match &last {
            None => doc! {},
            Some(id) => doc! { "_id": { "$gt": id.clone() } },
        };
        let docs: Vec<RawDocumentBuf> = coll
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(page)
            .batch_size(page as u32)
            .await?
            .try_collect()
            .await?;
        let Some(tail) = docs.last() else { break };
        last = Some(
            tail.get("_id")?
                .ok_or("document without _id")?
                .to_raw_bson()
                .try_into()?,
        );
        n += docs.len();
    }
    let secs = t.elapsed().as_secs_f64();
    if n != expect {
        return Err(format!("paging returned {n} documents, expected {expect}").into());
    }
    Ok((secs, sim.cpu_seconds() - cpu))
}

/// `$in` lookups of `per` random ids each; returns (documents/s, sim cpu seconds).
async fn in_lookups(
    sim: &SimProcess,
    coll: &Collection<RawDocumentBuf>,
    ids: &[ObjectId],
    queries: usize,
    per: usize,
) -> BenchResult<(f64, f64)> {
    let cpu = sim.cpu_seconds();
    let t = Instant::now();
    let mut found = 0usize;
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..queries {
        let mut pick = Vec::with_capacity(per);
        for _ in 0..per {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            pick.push(Bson::ObjectId(ids[(x % ids.len() as u64) as usize]));
        }
        let docs: Vec<RawDocumentBuf> = coll
            .find(doc! { "_id": { "$in": pick } })
            .await?
            .try_collect()
            .await?;
        found += docs.len();
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((found as f64 / secs, sim.cpu_seconds() - cpu))
}

/// `updates` single-document updates while `watchers` change streams consume every event;
/// returns (simulator cpu seconds per update, updates/s end to end).
async fn fan_out(
    sim: &SimProcess,
    client: &Client,
    ids: &[ObjectId],
    watchers: usize,
    updates: usize,
) -> BenchResult<(f64, f64)> {
    let coll = client.database("bench").collection::<Document>("payments");
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let mut stream = coll
            .watch()
            .batch_size(10_000)
            .max_await_time(Duration::from_millis(500))
            .await?;
        tasks.push(tokio::spawn(async move {
            let mut seen = 0usize;
            while seen < updates {
                match stream.next().await {
                    Some(Ok(_)) => seen += 1,
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            Ok(seen)
        }));
    }
    let cpu = sim.cpu_seconds();
    let t = Instant::now();
    for (i, id) in ids.iter().cycle().take(updates).enumerate() {
        coll.update_one(
            doc! { "_id": id },
            doc! { "$set": { "status": format!("w{watchers}-{i}") } },
        )
        .await?;
    }
    for task in tasks {
        let seen = task.await??;
        if seen != updates {
            return Err(format!("a watcher saw {seen} of {updates} updates").into());
        }
    }
    let secs = t.elapsed().as_secs_f64();
    Ok((
        (sim.cpu_seconds() - cpu) / updates as f64,
        updates as f64 / secs,
    ))
}

async fn run(n: i64, in_queries: usize, updates: usize) -> BenchResult<Vec<Row>> {
    let mut rows = Vec::new();

    // Store memory and all reads: a small history window so history does not count.
    let sim = SimProcess::spawn(1000)?;
    let client = Client::with_uri_str(&sim.uri).await?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await?;
    let rss_empty = sim.rss_bytes();
    let coll = client.database("bench").collection::<Document>("payments");
    let (ids, raw_bytes, insert_rate) = load(&coll, n).await?;
    let rss_loaded = sim.rss_bytes();
    let per_byte = (rss_loaded.saturating_sub(rss_empty)) as f64 / raw_bytes as f64;
    rows.push(row(
        "insert_many (docs/s)",
        format!("{insert_rate:.0}"),
        "-".into(),
        1.0,
    ));
    rows.push(row(
        &format!("resident memory per raw BSON byte, {n} docs, window 1000"),
        format!(
            "{} for {} raw",
            mib(rss_loaded.saturating_sub(rss_empty)),
            mib(raw_bytes as u64)
        ),
        format!("{} empty", mib(rss_empty)),
        per_byte,
    ));

    let raw = client
        .database("bench")
        .collection::<RawDocumentBuf>("payments");
    let expect = n as usize;
    let (cursor_s, cursor_cpu) = one_cursor(&sim, &raw, doc! {}, 1000, expect).await?;
    rows.push(row(
        "one cursor find({}).sort({_id:1}), batchSize 1000 (s, sim cpu s)",
        format!("{cursor_s:.2} s, cpu {cursor_cpu:.2} s"),
        "-".into(),
        1.0,
    ));
    let (cursor10_s, cursor10_cpu) = one_cursor(&sim, &raw, doc! {}, 10_000, expect).await?;
    rows.push(row(
        "one cursor, batchSize 10000 (s, sim cpu s)",
        format!("{cursor10_s:.2} s, cpu {cursor10_cpu:.2} s"),
        format!("{cursor_s:.2} s (batchSize 1000)"),
        cursor10_s / cursor_s,
    ));
    let hwm_before_pages = sim.hwm_bytes();
    let (paged_s, paged_cpu) = paged(&sim, &raw, 1000, expect).await?;
    rows.push(row(
        "pages of 1000 by {_id:{$gt:last}} + sort + limit (s, sim cpu s)",
        format!("{paged_s:.2} s, cpu {paged_cpu:.2} s"),
        format!("{cursor_s:.2} s (one cursor)"),
        paged_s / cursor_s,
    ));
    // The snapshot's resume query: after a string `_id`, every later type bracket.
    let resume = doc! { "$or": [
        { "_id": { "$gt": "" } },
        { "_id": { "$type": ["object", "array", "binData", "objectId", "bool", "date", "timestamp", "regex", "maxKey"] } },
    ] };
    let what =
        "snapshot resume cursor ($or of _id range and $type list), batchSize 10000 (s, sim cpu s)";
    match one_cursor(&sim, &raw, resume, 10_000, expect).await {
        Ok((resume_s, resume_cpu)) => rows.push(row(
            what,
            format!("{resume_s:.2} s, cpu {resume_cpu:.2} s"),
            format!("{cursor10_s:.2} s (plain cursor)"),
            resume_s / cursor10_s,
        )),
        Err(e) => rows.push(Row {
            what: what.to_owned(),
            value: format!("WRONG: {e}"),
            baseline: format!("{cursor10_s:.2} s (plain cursor)"),
            ratio: "-".into(),
        }),
    }
    let (in_rate, in_cpu) = in_lookups(&sim, &raw, &ids, in_queries, 100).await?;
    let cursor_rate = n as f64 / cursor_s;
    rows.push(row(
        &format!("$in lookups, {in_queries} queries x 100 ids (docs/s, sim cpu s)"),
        format!("{in_rate:.0} docs/s, cpu {in_cpu:.2} s"),
        format!("{cursor_rate:.0} docs/s (one cursor)"),
        in_rate / cursor_rate,
    ));
    rows.push(row(
        "simulator peak RSS after the reads",
        mib(sim.hwm_bytes()),
        format!("{} before paging", mib(hwm_before_pages)),
        sim.hwm_bytes() as f64 / hwm_before_pages.max(1) as f64,
    ));

    let (cpu0, rate0) = fan_out(&sim, &client, &ids, 0, updates).await?;
    let (cpu1, rate1) = fan_out(&sim, &client, &ids, 1, updates).await?;
    let (cpu8, rate8) = fan_out(&sim, &client, &ids, 8, updates).await?;
    rows.push(row(
        "sim cpu per update, no watcher",
        format!("{:.0} us, {rate0:.0} updates/s", cpu0 * 1e6),
        "-".into(),
        1.0,
    ));
    rows.push(row(
        "sim cpu per update, 1 watcher",
        format!("{:.0} us, {rate1:.0} updates/s", cpu1 * 1e6),
        "-".into(),
        1.0,
    ));
    rows.push(row(
        "sim cpu per update, 8 watchers",
        format!("{:.0} us, {rate8:.0} updates/s", cpu8 * 1e6),
        format!("{:.0} us (1 watcher)", cpu1 * 1e6),
        cpu8 / cpu1,
    ));
    rows.push(row(
        "sim cpu per event per watcher (8 watchers, update cost removed)",
        format!("{:.0} us", (cpu8 - cpu0) / 8.0 * 1e6),
        format!("{:.0} us (1 watcher)", (cpu1 - cpu0) * 1e6),
        (cpu8 - cpu0) / 8.0 / (cpu1 - cpu0).max(1e-9),
    ));
    drop(client);
    drop(sim);

    // Memory with the default window (every insert event retained) and change-stream delivery.
    let sim = SimProcess::spawn(1_000_000)?;
    let client = Client::with_uri_str(&sim.uri).await?;
    client
        .database("admin")
        .run_command(doc! { "ping": 1 })
        .await?;
    let rss_empty = sim.rss_bytes();
    let coll = client.database("bench").collection::<Document>("payments");
    coll.insert_one(doc! { "_id": "start" }).await?;
    let mut stream = coll
        .watch()
        .batch_size(10_000)
        .max_await_time(Duration::from_millis(500))
        .await?;
    let (_, raw_bytes, _) = load(&coll, n).await?;
    let rss_loaded = sim.rss_bytes();
    rows.push(row(
        &format!(
            "resident memory per raw BSON byte, {n} docs + their {n} insert events in history"
        ),
        format!(
            "{} for {} raw",
            mib(rss_loaded.saturating_sub(rss_empty)),
            mib(raw_bytes as u64)
        ),
        format!("{} empty", mib(rss_empty)),
        (rss_loaded.saturating_sub(rss_empty)) as f64 / raw_bytes as f64,
    ));
    let t = Instant::now();
    let mut seen = 0i64;
    while seen < n {
        match stream.next().await {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => return Err(e.into()),
            None => break,
        }
    }
    let deliver = seen as f64 / t.elapsed().as_secs_f64();
    rows.push(row(
        "change-stream delivery of the backlog to one watcher (events/s)",
        format!("{deliver:.0}"),
        format!("{insert_rate:.0} (insert_many docs/s)"),
        deliver / insert_rate,
    ));
    rows.push(row(
        "simulator peak RSS (default window)",
        mib(sim.hwm_bytes()),
        "-".into(),
        1.0,
    ));
    Ok(rows)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let n = env("MONGOSIM_BENCH_DOCS", 200_000) as i64;
    let in_queries = env("MONGOSIM_BENCH_IN_QUERIES", 200);
    let updates = env("MONGOSIM_BENCH_UPDATES", 3000);
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
    match runtime.block_on(run(n, in_queries, updates)) {
        Ok(rows) => {
            println!("| measurement | value | baseline (same run) | ratio |");
            println!("|---|---|---|---|");
            for r in rows {
                println!(
                    "| {} | {} | {} | {} |",
                    r.what, r.value, r.baseline, r.ratio
                );
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
