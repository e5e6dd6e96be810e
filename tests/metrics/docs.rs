//! The operator-facing files agree with the metric name table: METRICS.md documents exactly the
//! exported metrics, and the Grafana dashboard and the alert rules only query metrics that exist.

use std::collections::BTreeSet;

use mongo2pg::metrics::dashboard::{self, panel_queries, unknown_metric_names, PanelQuery};
use mongo2pg::metrics::names;

fn read(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
}

fn dashboard_queries() -> Vec<PanelQuery> {
    panel_queries(&read(dashboard::DASHBOARD_PATH)).unwrap()
}

#[test]
fn metrics_md_has_one_section_per_exported_metric_and_no_other() {
    let doc = read("METRICS.md");
    let documented: BTreeSet<&str> = doc
        .lines()
        .filter_map(|l| {
            l.strip_prefix("### `")
                .and_then(|rest| rest.strip_suffix('`'))
        })
        .collect();
    let declared: BTreeSet<&str> = names::ALL.iter().map(|d| d.name).collect();
    assert_eq!(documented, declared, "METRICS.md sections");
    assert_eq!(unknown_metric_names(&doc), Vec::<&str>::new());

    for def in names::ALL {
        let section = doc.split(&format!("### `{}`", def.name)).nth(1).unwrap();
        let section = section.split("### ").next().unwrap();
        assert!(
            section.contains(&format!("Type: {}.", def.kind.as_str())),
            "{} type is documented",
            def.name
        );
        for label in def.labels {
            assert!(
                section.contains(&format!("`{label}`")),
                "{} label {label}",
                def.name
            );
        }
        assert!(
            section.contains("Answers:"),
            "{} says what question it answers",
            def.name
        );
    }
}

#[test]
fn dashboard_queries_only_use_exported_metrics() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 20, "found {} queries", queries.len());
    for query in &queries {
        assert!(
            !query.metric_names().is_empty(),
            "{}: queries no mongo2pg metric",
            query.panel
        );
        assert_eq!(
            unknown_metric_names(&query.expr),
            Vec::<&str>::new(),
            "{}",
            query.panel
        );
    }
}

#[test]
fn dashboard_covers_what_operators_watch() {
    let queries = dashboard_queries();
    let used: BTreeSet<&str> = queries
        .iter()
        .flat_map(|q| q.metric_names())
        .filter_map(|n| names::find(n).map(|d| d.name))
        .collect();
    let unused: Vec<&str> = names::ALL
        .iter()
        .map(|d| d.name)
        .filter(|n| !used.contains(n))
        .collect();
    assert_eq!(unused, Vec::<&str>::new(), "every metric has a panel");

    let titles: BTreeSet<&str> = queries.iter().map(|q| q.panel.as_str()).collect();
    for title in [
        "Replication lag by collection",
        "Events applied per second",
        "Batch latency (p50, p99)",
        "Open gaps by kind",
        "Stream restarts by reason",
        "Snapshot documents remaining",
        "Checkpoint age by collection",
        "Stream held by a replica",
    ] {
        assert!(titles.contains(title), "panel {title:?}");
    }
}

#[test]
fn dashboard_queries_become_plain_promql_for_the_http_api() {
    let queries = dashboard_queries();
    let lag = queries
        .iter()
        .find(|q| q.panel == "Replication lag by collection")
        .unwrap();
    assert_eq!(
        lag.for_prometheus("1m"),
        r#"max by (collection) (mongo2pg_replication_lag_seconds{collection=~".*"})"#
    );
    for query in &queries {
        let promql = query.for_prometheus("30s");
        assert!(!promql.contains('$'), "{}: {promql}", query.panel);
    }
}

#[test]
fn dashboard_panels_use_the_provisioned_datasource() {
    let json: serde_json::Value = serde_json::from_str(&read(dashboard::DASHBOARD_PATH)).unwrap();
    let provisioned = read("grafana/provisioning/datasources/prometheus.yml");
    assert!(provisioned.contains("uid: prometheus"));
    for panel in json["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "prometheus",
            "{}",
            panel["title"]
        );
    }
    assert_eq!(json["uid"], "mongo2pg");
}

#[test]
fn alert_rules_only_use_exported_metrics_and_link_to_the_runbook() {
    let rules = read("deploy/prometheus/alerts.yml");
    assert_eq!(unknown_metric_names(&rules), Vec::<&str>::new());

    let alerts = rules.matches("- alert: ").count();
    let links: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("runbook_url: "))
        .map(|l| l.trim_matches('"'))
        .collect();
    assert_eq!(links.len(), alerts, "one runbook link per alert");
    let anchors: BTreeSet<&str> = links
        .iter()
        .map(|l| l.rsplit_once("README.md#").unwrap().1)
        .collect();
    let expected: BTreeSet<&str> = [
        "runbook-lag",
        "runbook-stream-down",
        "runbook-gaps",
        "runbook-history-lost",
        "runbook-snapshot-stalled",
        "runbook-token-reset",
        "runbook-verify",
    ]
    .into();
    assert_eq!(anchors, expected);
    let readme = read("README.md");
    for anchor in expected {
        let heading = anchor
            .replacen("runbook-", "### Runbook: ", 1)
            .replace('-', " ");
        assert!(
            readme.to_lowercase().contains(&heading.to_lowercase()),
            "README has no section {heading:?} for {anchor}"
        );
    }
}
