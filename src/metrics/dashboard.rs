//! Reads the PromQL queries out of the Grafana dashboard JSON.
//!
//! The dashboard (`grafana/mongo2pg.json`) is the one list of queries operators look at; tests use
//! this module to check that every query only names metrics from `names` and, against a live
//! Prometheus, that every query returns data. Grafana variables are substituted so a query can be
//! sent to Prometheus' HTTP API as is.

use serde_json::Value;

use super::names;

/// The path of the shipped dashboard, relative to the repository root.
pub const DASHBOARD_PATH: &str = "grafana/mongo2pg.json";

/// One PromQL target of one dashboard panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelQuery {
    pub panel: String,
    pub ref_id: String,
    /// The expression as stored in the dashboard (with Grafana variables).
    pub expr: String,
}

impl PanelQuery {
    /// The expression with Grafana variables replaced: `$collection` matches every collection and
    /// `$__rate_interval` becomes `rate_interval` (e.g. `"1m"`).
    pub fn for_prometheus(&self, rate_interval: &str) -> String {
        self.expr
            .replace("${__rate_interval}", rate_interval)
            .replace("$__rate_interval", rate_interval)
            .replace("${collection}", ".*")
            .replace("$collection", ".*")
    }

    /// Every `mongo2pg_*` series name the expression mentions.
    pub fn metric_names(&self) -> Vec<&str> {
        metric_names(&self.expr)
    }
}

/// Every PromQL target in the dashboard, panels inside rows included, in dashboard order.
pub fn panel_queries(dashboard_json: &str) -> Result<Vec<PanelQuery>, serde_json::Error> {
    let dashboard: Value = serde_json::from_str(dashboard_json)?;
    let mut out = Vec::new();
    if let Some(panels) = dashboard.get("panels").and_then(Value::as_array) {
        collect(panels, &mut out);
    }
    Ok(out)
}

fn collect(panels: &[Value], out: &mut Vec<PanelQuery>) {
    for panel in panels {
        let title = panel
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(targets) = panel.get("targets").and_then(Value::as_array) {
            for target in targets {
                if let Some(expr) = target.get("expr").and_then(Value::as_str) {
                    out.push(PanelQuery {
                        panel: title.to_string(),
                        ref_id: target
                            .get("refId")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        expr: expr.to_string(),
                    });
                }
            }
        }
        if let Some(nested) = panel.get("panels").and_then(Value::as_array) {
            collect(nested, out);
        }
    }
}

/// Every `mongo2pg_*` identifier in a text (a PromQL expression, an alert rule file).
pub fn metric_names(text: &str) -> Vec<&str> {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("mongo2pg_") {
        let preceded_by_ident = rest[..start].chars().next_back().is_some_and(is_ident);
        let tail = &rest[start..];
        let len = tail.find(|c: char| !is_ident(c)).unwrap_or(tail.len());
        let bare_prefix = len == "mongo2pg_".len();
        if !preceded_by_ident && !bare_prefix && !found.contains(&&tail[..len]) {
            found.push(&tail[..len]);
        }
        rest = &tail[len..];
    }
    found
}

/// The names in `text` that are not exported metrics (histogram suffixes allowed).
pub fn unknown_metric_names(text: &str) -> Vec<&str> {
    metric_names(text)
        .into_iter()
        .filter(|name| names::find(name).is_none())
        .collect()
}
