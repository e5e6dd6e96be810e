//! verify against a real copy: clean when Postgres equals MongoDB, and a deliberately altered row,
//! a missing row and a wrong money sum are each reported precisely.

use crate::support::shop::{oid, order_doc, user_doc, Env};
use mongo2pg::ops::verify::compare::ColumnDiff;
use mongo2pg::snapshot::SnapshotOptions;

async fn copied_env(test: &str) -> Env {
    let env = Env::start(test).await;
    env.coll("users")
        .insert_many((0..5).map(user_doc))
        .await
        .expect("seed users");
    env.coll("orders")
        .insert_many((0..12).map(|n| {
            order_doc(
                n,
                n % 5,
                &format!("{n}.10"),
                if n < 6 { "USDT" } else { "TRY" },
                "paid",
            )
        }))
        .await
        .expect("seed orders");
    let options = SnapshotOptions {
        page_size: 5,
        ..SnapshotOptions::default()
    };
    env.snapshot("users", &options).await;
    env.snapshot("orders", &options).await;
    env
}

fn order_key(n: u32) -> String {
    oid(1_000_000 + n).to_hex()
}

#[tokio::test]
async fn verify_is_clean_after_a_copy_and_reports_exact_sums() {
    let env = copied_env("verify_clean").await;
    let report = env
        .verify(&["users", "orders"], &[("orders", "currency")])
        .await;
    assert!(report.clean, "{report:#?}");
    let orders = &report.collections[1];
    assert_eq!((orders.mongo_documents, orders.postgres_rows), (12, 12));
    let usdt = orders
        .money_sums
        .iter()
        .find(|m| m.group.as_deref() == Some("USDT"))
        .expect("USDT group");
    // 0.10 + 1.10 + ... + 5.10
    assert_eq!(usdt.mongo.as_deref(), Some("15.6"));
    assert_eq!(usdt.postgres.as_deref(), Some("15.6"));
    assert_eq!(orders.child_counts[0].mongo, 24);
    assert_eq!(orders.child_counts[0].postgres, 24);
}

#[tokio::test]
async fn verify_names_the_altered_column_of_an_altered_row() {
    let env = copied_env("verify_altered").await;
    env.pg
        .execute(
            "update orders set status = 'void' where legacy_object_id = $1",
            &[&order_key(3)],
        )
        .await
        .expect("alter row");
    let report = env.verify(&["orders"], &[]).await;
    assert!(!report.clean);
    let orders = &report.collections[0];
    assert_eq!(orders.differing_count, 1);
    assert_eq!(orders.differing[0].legacy_id, order_key(3));
    assert_eq!(
        orders.differing[0].columns,
        vec![ColumnDiff {
            column: "status".into(),
            mongo: Some("paid".into()),
            postgres: Some("void".into())
        }]
    );
    assert!(orders
        .checksums
        .iter()
        .any(|c| c.column == "status" && !c.matches));
    assert!(orders
        .checksums
        .iter()
        .filter(|c| c.column != "status")
        .all(|c| c.matches));
    assert_eq!((orders.missing_count, orders.extra_count), (0, 0));
    let text = mongo2pg::ops::verify::render_text(&report);
    assert!(
        text.contains(&format!(
            "{} status: mongo=paid postgres=void",
            order_key(3)
        )),
        "{text}"
    );
    assert!(text.ends_with("verify: MISMATCH\n"));
}

#[tokio::test]
async fn verify_reports_a_missing_row_and_its_children() {
    let env = copied_env("verify_missing").await;
    env.pg
        .execute(
            "delete from orders where legacy_object_id = $1",
            &[&order_key(7)],
        )
        .await
        .expect("delete row");
    let report = env.verify(&["orders"], &[]).await;
    assert!(!report.clean);
    let orders = &report.collections[0];
    assert_eq!(orders.missing, vec![order_key(7)]);
    assert_eq!(orders.missing_count, 1);
    assert_eq!(orders.postgres_rows, 11);
    assert_eq!(
        (
            orders.child_counts[0].mongo,
            orders.child_counts[0].postgres
        ),
        (24, 22)
    );
}

#[tokio::test]
async fn verify_detects_a_wrong_money_sum_down_to_the_last_digit() {
    let env = copied_env("verify_money").await;
    env.pg
        .execute(
            "update orders set amount = amount + 0.000000000000000001 where legacy_object_id = $1",
            &[&order_key(8)],
        )
        .await
        .expect("alter amount");
    let report = env.verify(&["orders"], &[("orders", "currency")]).await;
    assert!(!report.clean);
    let orders = &report.collections[0];
    let try_sum = orders
        .money_sums
        .iter()
        .find(|m| m.group.as_deref() == Some("TRY"))
        .expect("TRY group");
    // 6.10 + 7.10 + ... + 11.10
    assert_eq!(try_sum.mongo.as_deref(), Some("51.6"));
    assert_eq!(try_sum.postgres.as_deref(), Some("51.600000000000000001"));
    assert!(!try_sum.matches);
    let usdt = orders
        .money_sums
        .iter()
        .find(|m| m.group.as_deref() == Some("USDT"))
        .expect("USDT group");
    assert!(usdt.matches);
    assert_eq!(orders.differing[0].columns[0].column, "amount");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_the_mapping_rejects_are_counted_and_left_out_of_sums_and_counts() {
    let env = copied_env("verify_gap").await;
    let nan: bson::Decimal128 = "NaN".parse().expect("NaN");
    env.coll("orders")
        .update_one(
            bson::doc! {"_id": oid(1_000_005)},
            bson::doc! {"$set": {"amount": nan}},
        )
        .await
        .expect("corrupt the amount");
    env.catch_up("orders", env.mongo_now().await).await;
    assert_eq!(
        env.count("select count(*) from public.pg_dualwrite_gaps where kind = 'invalid_number'")
            .await,
        1
    );
    let report = env.verify(&["orders"], &[("orders", "currency")]).await;
    let orders = &report.collections[0];
    assert!(report.clean, "{report:#?}");
    assert_eq!((orders.unmappable_documents, orders.postgres_rows), (1, 12));
    let usdt = orders
        .money_sums
        .iter()
        .find(|m| m.group.as_deref() == Some("USDT"))
        .expect("USDT");
    // 0.10 + 1.10 + 2.10 + 3.10 + 4.10: order 5 is a gap, its stale row is not summed.
    assert_eq!(
        (usdt.mongo.as_deref(), usdt.postgres.as_deref()),
        (Some("10.5"), Some("10.5"))
    );
    assert_eq!(
        (
            orders.child_counts[0].mongo,
            orders.child_counts[0].postgres
        ),
        (22, 22)
    );
}
