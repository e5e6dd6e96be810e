//! id_map allocation under concurrency: two allocators racing for the same legacy ids end with one
//! UUID per id, and the loser reuses the winner's UUIDs.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::sink_fixtures::*;
use mongo2pg::event::Operation;
use mongo2pg::mapping::LegacyRef;
use mongo2pg::sink::idmap::{resolve, IdCache, Likely};
use mongo2pg::sink::{catalogue, ControlNames, Sink};

fn refs(range: std::ops::Range<u32>) -> BTreeSet<LegacyRef> {
    range.map(|n| key("users", n)).collect()
}

#[tokio::test]
async fn an_allocator_that_loses_the_race_takes_the_winners_uuids() {
    race("idmap_race", Likely::New).await;
}

/// The same race when the loser reads the entries there first (a batch of updates): the
/// winner's entries are not committed yet when it reads, so it waits on its insert, then looks
/// them up.
#[tokio::test]
async fn an_allocator_that_looks_up_first_and_loses_the_race_takes_the_winners_uuids() {
    race("idmap_race_known", Likely::Known).await;
}

async fn race(test: &str, likely: Likely) {
    let env = env(test).await;
    let mut first = env.db.client().await;
    let mut second = env.db.client().await;
    let observer = env.db.client().await;
    let second_pid: i32 = second
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let tx1 = first.transaction().await.unwrap();
    let mut cache1 = IdCache::new(100);
    let won = resolve(&tx1, "public.id_map", &mut cache1, refs(0..50), &[], likely)
        .await
        .unwrap();
    assert_eq!(won.allocated, 50);
    assert!(won.ids.values().all(|id| id.get_version_num() == 7));

    // The second allocator overlaps (25..75) and must wait for the first to finish.
    let racer = tokio::spawn(async move {
        let tx2 = second.transaction().await.unwrap();
        let mut cache2 = IdCache::new(100);
        let got = resolve(
            &tx2,
            "public.id_map",
            &mut cache2,
            refs(25..75),
            &[],
            likely,
        )
        .await
        .unwrap();
        tx2.commit().await.unwrap();
        got
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: bool = observer
            .query_one(
                "SELECT wait_event_type IS NOT DISTINCT FROM 'Lock' FROM pg_stat_activity WHERE pid = $1",
                &[&second_pid],
            )
            .await
            .unwrap()
            .get(0);
        if waiting {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "second allocator never blocked on the first"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx1.commit().await.unwrap();
    let lost = racer.await.unwrap();

    assert_eq!(
        lost.allocated, 25,
        "only 50..75 were new to the second allocator"
    );
    for n in 25..50 {
        let k = key("users", n);
        assert_eq!(lost.ids[&k], won.ids[&k], "legacy id {n} got two UUIDs");
    }
    assert_eq!(
        rows(
            &observer,
            "SELECT count(*), count(DISTINCT new_id) FROM id_map"
        )
        .await,
        vec!["75|75"]
    );
}

#[tokio::test]
async fn concurrent_batches_referencing_the_same_ids_end_with_one_uuid_each() {
    let env = env("idmap_batches").await;
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let cat = catalogue::load(&env.client, &tables).await.unwrap();
    for round in 0..5u32 {
        let base = round * 1000;
        let mut tasks = Vec::new();
        for worker in 0..2u32 {
            let mut client = env.db.client().await;
            let mut sink = Sink::new(cat.clone(), ControlNames::default());
            // Each worker writes payments (its own) referencing the same 100 buyers, in
            // opposite orders; the buyers themselves are never written (FK gaps are expected).
            let mut buyers: Vec<u32> = (base..base + 100).collect();
            if worker == 1 {
                buyers.reverse();
            }
            tasks.push(tokio::spawn(async move {
                let items = buyers
                    .iter()
                    .map(|&b| {
                        let p = b + 500 + worker * 100_000;
                        ops_item(
                            "payments",
                            Operation::Insert,
                            p,
                            10,
                            vec![payment(p, b, "1.00", 10)],
                        )
                    })
                    .collect();
                sink.apply_batch(&mut client, &format!("w{worker}"), 0, items, None)
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            let out = t.await.unwrap();
            assert_eq!(out.gaps_by_kind.len(), 1);
        }
    }
    assert_eq!(
        rows(
            &env.client,
            "SELECT count(*), count(DISTINCT new_id) FROM id_map WHERE collection = 'users'"
        )
        .await,
        vec!["500|500"]
    );
    // Every fk_missing gap names the buyer UUID that id_map holds.
    assert_eq!(
        rows(
            &env.client,
            "SELECT count(*) FROM pg_dualwrite_gaps g JOIN id_map m ON m.collection = 'users'
               AND g.reason LIKE '%(buyer_id)=(' || m.new_id || ')%'"
        )
        .await,
        vec!["1000"]
    );
}
