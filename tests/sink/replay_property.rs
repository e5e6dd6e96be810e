//! Property: applying a random stream of upserts, deletes, soft deletes and rejected rows in
//! random batch sizes, then replaying it from a random earlier point in other batch sizes, ends
//! with exactly the rows and open gaps an in-order, one-by-one application gives. Also: a rejected event in a
//! big batch is isolated without falling back to one round trip per event.

use std::collections::BTreeMap;

use crate::support::sink_fixtures::*;
use mongo2pg::event::{ClusterTime, Operation};
use mongo2pg::mapping::{GapKind, RowOp, SqlValue};
use mongo2pg::sink::{catalogue, BatchItem, ControlNames, Sink};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[derive(Debug, Clone)]
enum Change {
    Upsert {
        variant: u8,
        cents: i64,
        passkeys: u8,
    },
    Delete,
    SoftDelete,
}

#[derive(Debug, Clone, PartialEq)]
struct ModelRow {
    email: String,
    balance: String,
    deleted: bool,
    version: i64,
    passkeys: Vec<String>,
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => (0u8..3, -20i64..10_000, 0u8..3)
            .prop_map(|(variant, cents, passkeys)| Change::Upsert { variant, cents, passkeys }),
        2 => Just(Change::Delete),
        1 => Just(Change::SoftDelete),
    ]
}

fn rejected(c: &Change) -> bool {
    matches!(c, Change::Upsert { cents, .. } if *cents < 0)
}

fn email(key: u32, variant: u8) -> String {
    format!("u{key}-{variant}@x")
}

fn balance_text(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn passkey_names(key: u32, variant: u8, n: u8) -> Vec<String> {
    (0..n).map(|i| format!("pk{key}-{variant}-{i}")).collect()
}

/// Event `i` of the stream: key, cluster time and the batch item.
fn item(i: usize, key: u32, c: &Change) -> BatchItem {
    let t = 100 + i as u32;
    let version = Some(("version".to_string(), ClusterTime::new(t, 1)));
    match c {
        Change::Upsert {
            variant,
            cents,
            passkeys,
        } => {
            let names = passkey_names(key, *variant, *passkeys);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let op = user(key, &email(key, *variant), &balance_text(*cents), t, &refs);
            ops_item("users", Operation::Update, key, t, vec![op])
        }
        Change::Delete => ops_item(
            "users",
            Operation::Delete,
            key,
            t,
            vec![delete("users", "users", key, t)],
        ),
        Change::SoftDelete => ops_item(
            "users",
            Operation::Delete,
            key,
            t,
            vec![RowOp::SoftDelete {
                table: "users".into(),
                legacy_column: "legacy_object_id".into(),
                key: key_of(key),
                column: "deleted_at".into(),
                value: SqlValue::Timestamptz(
                    chrono::DateTime::from_timestamp(1_600_000_000, 0)
                        .unwrap()
                        .into(),
                ),
                version,
            }],
        ),
    }
}

fn key_of(n: u32) -> mongo2pg::mapping::LegacyRef {
    key("users", n)
}

/// In-order, one-event-at-a-time semantics.
fn model(stream: &[(u32, Change)]) -> BTreeMap<String, ModelRow> {
    let mut rows: BTreeMap<String, ModelRow> = BTreeMap::new();
    for (i, (k, c)) in stream.iter().enumerate() {
        let legacy = oid(*k).to_hex();
        let version = ClusterTime::new(100 + i as u32, 1).to_sql();
        match c {
            Change::Upsert {
                variant,
                cents,
                passkeys,
            } => {
                if *cents < 0 {
                    continue; // rejected by the CHECK constraint: a gap, nothing written
                }
                let deleted = rows.get(&legacy).is_some_and(|r| r.deleted);
                rows.insert(
                    legacy,
                    ModelRow {
                        email: email(*k, *variant),
                        balance: format!("{}.{:02}0000000000000000", cents / 100, cents % 100),
                        deleted,
                        version,
                        passkeys: passkey_names(*k, *variant, *passkeys),
                    },
                );
            }
            Change::Delete => {
                rows.remove(&legacy);
            }
            Change::SoftDelete => {
                // The row is flagged; its version stays the version of its data.
                if let Some(r) = rows.get_mut(&legacy) {
                    r.deleted = true;
                }
            }
        }
    }
    rows
}

async fn stored(client: &tokio_postgres::Client) -> BTreeMap<String, ModelRow> {
    let rows = client
        .query(
            "SELECT u.legacy_object_id, u.email, u.balance::text, u.deleted_at IS NOT NULL, u.version,
                    COALESCE(array_agg(p.credential ORDER BY p.position) FILTER (WHERE p.id IS NOT NULL), '{}')
             FROM users u LEFT JOIN passkeys p ON p.user_id = u.id GROUP BY u.id",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            (
                r.get(0),
                ModelRow {
                    email: r.get(1),
                    balance: r.get(2),
                    deleted: r.get(3),
                    version: r.get(4),
                    passkeys: r.get(5),
                },
            )
        })
        .collect()
}

async fn apply_in_batches(
    sink: &mut Sink,
    client: &mut tokio_postgres::Client,
    items: &[BatchItem],
    sizes: &[usize],
) {
    let mut rest = items;
    let mut s = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*s.next().unwrap_or(&1)).clamp(1, rest.len());
        let (batch, tail) = rest.split_at(n);
        sink.apply_batch(client, "users", 0, batch.to_vec(), None)
            .await
            .unwrap();
        rest = tail;
    }
}

#[test]
fn replaying_from_any_point_in_any_batch_sizes_converges_to_in_order_application() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(env("replay_property"));
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let cat = rt.block_on(catalogue::load(&env.client, &tables)).unwrap();
    let client = tokio::sync::Mutex::new(rt.block_on(env.db.client()));
    // PROPTEST_CASES raises the number of cases for a deeper search.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = (
        prop::collection::vec((0u32..5, change()), 1..40),
        prop::collection::vec(1usize..12, 1..6),
        prop::collection::vec(1usize..12, 1..6),
        0.0f64..1.0,
    );
    runner
        .run(&strategy, |(stream, sizes, replay_sizes, replay_from)| {
            rt.block_on(async {
                let mut client = client.lock().await;
                client
                    .batch_execute("TRUNCATE users, passkeys, id_map, pg_dualwrite_gaps, mongo2pg.checkpoints, mongo2pg.tombstones CASCADE")
                    .await
                    .unwrap();
                let mut sink = Sink::new(cat.clone(), ControlNames::default());
                let items: Vec<BatchItem> = stream.iter().enumerate().map(|(i, (k, c))| item(i, *k, c)).collect();
                let expected = model(&stream);
                apply_in_batches(&mut sink, &mut client, &items, &sizes).await;
                assert_eq!(stored(&client).await, expected, "after the first pass");
                let from = ((items.len() as f64) * replay_from) as usize;
                apply_in_batches(&mut sink, &mut client, &items[from..], &replay_sizes).await;
                assert_eq!(stored(&client).await, expected, "after replaying from {from}");
                // Open gaps: rejected events with no later applied event for the same document
                // (those were superseded, or compacted away inside a batch).
                let expected_open: Vec<(String, i64)> = stream
                    .iter()
                    .enumerate()
                    .filter(|(i, (k, c))| {
                        rejected(c)
                            && !stream[i + 1..].iter().any(|(k2, c2)| k2 == k && !rejected(c2))
                    })
                    .map(|(i, (k, _))| {
                        (format!(r#"{{"$oid":"{}"}}"#, oid(*k).to_hex()), ClusterTime::new(100 + i as u32, 1).to_sql())
                    })
                    .collect();
                let open: Vec<(String, i64)> = client
                    .query(
                        "SELECT document_key, cluster_time FROM pg_dualwrite_gaps
                         WHERE status = 'open' AND kind = 'check_violation' ORDER BY cluster_time",
                        &[],
                    )
                    .await
                    .unwrap()
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                assert_eq!(open, expected_open, "open gaps");
            });
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_rejected_event_in_a_large_batch_is_isolated_without_one_round_trip_per_event() {
    let mut env = env("bisect").await;
    let items: Vec<BatchItem> = (1..=400u32)
        .map(|n| {
            let balance = if n == 123 || n == 124 || n == 350 {
                "-5"
            } else {
                "5"
            };
            ops_item(
                "users",
                Operation::Insert,
                n,
                10,
                vec![user(n, &format!("{n}@x"), balance, 10, &["k"])],
            )
        })
        .collect();
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap();
    assert!(out.per_event_fallback);
    assert_eq!(out.gaps_by_kind.get(&GapKind::CheckViolation), Some(&3));
    assert_eq!(out.applied.get("insert"), Some(&397));
    assert_eq!(out.rows_written.get("users"), Some(&397));
    assert_eq!(out.rows_written.get("passkeys"), Some(&397));
    assert!(
        out.statements < 200,
        "{} statements for 400 events",
        out.statements
    );
    assert_eq!(
        rows(&env.client, "SELECT count(*), sum(balance) FROM users").await,
        vec!["397|1985.000000000000000000"]
    );
}
