//! `mongo2pg verify --last`: the human-readable form of the last continuous-verification rounds
//! stored by `run` (`sink::verify_results`), one block per collection with its mismatches. Pure
//! formatting; reading them is `sink::verify_results::last_rounds`.

use std::fmt::Write as _;

use crate::sink::verify_results::Round;

/// One block per collection: when, what was compared, the note, then each mismatch.
pub fn render_rounds(rounds: &[Round]) -> String {
    if rounds.is_empty() {
        return "no continuous verification round recorded yet (set [verify] in the mapping and run `mongo2pg run`)\n".to_string();
    }
    let mut out = String::new();
    for r in rounds {
        let totals = match (r.counts_compared, r.sums_compared) {
            (true, true) => "counts and sums compared",
            (true, false) => "counts compared",
            (false, true) => "sums compared",
            (false, false) => "counts and sums not compared",
        };
        let _ = writeln!(
            out,
            "{}: {} at {} ({} ms): sampled {}, compared {}, {}, {} mismatch{}",
            r.collection,
            if r.mismatches.is_empty() {
                "clean"
            } else {
                "MISMATCH"
            },
            r.finished_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            r.duration.as_millis(),
            r.sampled,
            r.compared,
            totals,
            r.mismatches.len(),
            if r.mismatches.len() == 1 { "" } else { "es" }
        );
        if let Some(note) = &r.note {
            let _ = writeln!(out, "  note: {note}");
        }
        for m in &r.mismatches {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                m.check.as_str(),
                m.document_key.as_deref().unwrap_or("-"),
                m.detail
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::verify_results::{CheckKind, Mismatch};
    use std::time::Duration;

    #[test]
    fn a_round_with_a_mismatch_lists_it_under_its_collection() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-11-27T15:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let rounds = [Round {
            collection: "users".into(),
            finished_at: at,
            duration: Duration::from_millis(42),
            sampled: 3,
            compared: 3,
            counts_compared: true,
            sums_compared: false,
            note: None,
            mismatches: vec![Mismatch {
                check: CheckKind::Document,
                document_key: Some("650000000000000000000001".into()),
                detail: "{\"missing\":\"users\"}".into(),
            }],
        }];
        assert_eq!(
            render_rounds(&rounds),
            "users: MISMATCH at 2026-11-27T15:00:00Z (42 ms): sampled 3, compared 3, counts compared, 1 mismatch\n  document 650000000000000000000001: {\"missing\":\"users\"}\n"
        );
        assert!(render_rounds(&[]).starts_with("no continuous verification round"));
    }
}
