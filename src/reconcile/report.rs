//! Reconciliation, for the operator's eyes: the progress of a run on the command line (a
//! bar with rate and ETA on a terminal, plain lines otherwise) and the run's summary table
//! and findings as text.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::compare::FindingKind;
use super::run::Progress;
use super::sync::SyncReport;
use crate::ledger::{FindingRow, RunRow};

/// A bar per target, drawn on standard error.
pub(crate) struct Bars {
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    pub(crate) fn new() -> Bars {
        Bars {
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn with(&self, target: &str, f: impl FnOnce(&ProgressBar)) {
        let bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bar) = bars.get(target) {
            f(bar);
        }
    }
}

impl Progress for Bars {
    fn target_started(&self, target: &str, expected: u64) {
        let bar = ProgressBar::new(expected);
        let style = ProgressStyle::with_template(
            "{prefix:<12} [{bar:30}] {pos}/{len} accounts  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(target.to_owned());
        self.bars
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.to_owned(), bar);
    }

    fn advanced(&self, target: &str, accounts: u64, findings: u64) {
        self.with(target, |bar| {
            // The ledger's count is a guide: a listing also shows accounts it does not know.
            if bar.position() + accounts > bar.length().unwrap_or(0) {
                bar.set_length(bar.position() + accounts);
            }
            bar.inc(accounts);
            bar.set_message(format!("{findings} findings"));
        });
    }

    fn target_finished(&self, target: &str, findings: u64) {
        self.with(target, |bar| {
            bar.finish_with_message(format!("{findings} findings"))
        });
    }
}

/// Progress as plain lines on standard error, at most one a second per target.
pub(crate) struct Lines {
    seen: Mutex<HashMap<String, (u64, Instant, Instant)>>,
}

impl Lines {
    pub(crate) fn new() -> Lines {
        Lines {
            seen: Mutex::new(HashMap::new()),
        }
    }
}

impl Progress for Lines {
    fn target_started(&self, target: &str, expected: u64) {
        eprintln!("{target}: reading the target back ({expected} accounts in the ledger)");
        let now = Instant::now();
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(target.to_owned(), (0, now, now));
    }

    fn advanced(&self, target: &str, accounts: u64, findings: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((count, started, last)) = seen.get_mut(target) {
            *count += accounts;
            if last.elapsed().as_secs() >= 1 {
                *last = Instant::now();
                let rate = *count as f64 / started.elapsed().as_secs_f64().max(0.001);
                eprintln!("{target}: {count} accounts compared, {findings} findings, {rate:.0}/s");
            }
        }
    }

    fn target_finished(&self, target: &str, findings: u64) {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let count = seen.get(target).map_or(0, |(count, ..)| *count);
        eprintln!("{target}: done, {count} accounts compared, {findings} findings");
    }
}

/// The summary of a run: its status, then findings per target and kind.
pub(crate) fn summary(run: &RunRow) -> String {
    let mut text = String::new();
    let mode = if run.apply { "applied" } else { "report only" };
    let took = run
        .finished_at
        .map(|end| format!(" in {:.1}s", (end - run.started_at) as f64 / 1000.0))
        .unwrap_or_default();
    let _ = writeln!(
        text,
        "reconcile run {} ({mode}): {}{took}",
        run.id, run.status
    );
    if let Some(error) = &run.error {
        let _ = writeln!(text, "error: {error}");
    }
    let _ = write!(text, "{:<12}", "target");
    for kind in FindingKind::ALL {
        let _ = write!(text, " {:>15}", kind.as_str());
    }
    text.push('\n');
    let counts = run.counts.as_object().cloned().unwrap_or_default();
    if counts.is_empty() {
        let _ = writeln!(
            text,
            "(no findings: every target holds what the ledger says)"
        );
    }
    for (target, kinds) in counts {
        let _ = write!(text, "{target:<12}");
        for kind in FindingKind::ALL {
            let count = kinds
                .get(kind.as_str())
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let _ = write!(text, " {count:>15}");
        }
        text.push('\n');
    }
    text
}

/// A sync, step by step per target.
pub(crate) fn sync(report: &SyncReport) -> String {
    let mut text = String::new();
    let mode = if report.dry_run {
        " (dry run: nothing is sent)"
    } else {
        ""
    };
    let _ = writeln!(text, "sync of user {}{mode}", report.user_id);
    let user = serde_json::to_string_pretty(&report.user).unwrap_or_default();
    let _ = writeln!(text, "1. SCIM user:\n{}", indent(&user));
    if report.targets.is_empty() {
        let _ = writeln!(text, "(no target has a desired state for this user)");
    }
    for step in &report.targets {
        let _ = writeln!(
            text,
            "\n== {} (mapping {})",
            step.target, step.mapping_version
        );
        let payload = serde_json::to_string_pretty(&step.payload).unwrap_or_default();
        let _ = writeln!(
            text,
            "2. rendered payload ({}):\n{}",
            step.operation.as_str(),
            indent(&payload)
        );
        let account = match &step.account {
            Some(id) => format!("{id} (by {})", step.found_by),
            None => "none found".to_owned(),
        };
        let _ = writeln!(text, "3. account: {account}");
        let diff = match &step.finding {
            None => "in step: the target holds what was delivered\n".to_owned(),
            Some(finding) => {
                let mut lines = format!("{}\n", finding.kind.as_str());
                for field in &finding.fields {
                    let value =
                        |v: &Option<Value>| v.as_ref().map_or("-".to_owned(), Value::to_string);
                    let _ = writeln!(
                        lines,
                        "     {}: desired {}, delivered {}, actual {}",
                        field.field,
                        value(&field.desired),
                        value(&field.delivered),
                        value(&field.actual)
                    );
                }
                lines
            }
        };
        let _ = write!(text, "4. three-way: {diff}");
        let verb = if report.dry_run { "would send" } else { "sent" };
        let _ = writeln!(text, "5. request ({verb}): {}", step.request);
        let answer = step.answer.as_deref().unwrap_or("none: dry run");
        let _ = writeln!(text, "6. answer: {answer}");
    }
    text
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("   {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One finding as a line, with a line per field involved.
pub(crate) fn finding(finding: &FindingRow) -> String {
    let mut text = format!(
        "{:<16} {:<12} user={} account={} decision={}",
        finding.kind,
        finding.target,
        finding.user_id.as_deref().unwrap_or("-"),
        finding.remote_id.as_deref().unwrap_or("-"),
        finding.decision,
    );
    if let Some(error) = &finding.error {
        let _ = write!(text, " error={error}");
    }
    text.push('\n');
    for field in finding.fields.as_array().into_iter().flatten() {
        let value = |name: &str| match field.get(name) {
            Some(Value::Null) | None => "-".to_owned(),
            Some(value) => value.to_string(),
        };
        let _ = writeln!(
            text,
            "    {}: desired {}, delivered {}, actual {}",
            field.get("field").and_then(Value::as_str).unwrap_or("?"),
            value("desired"),
            value("delivered"),
            value("actual"),
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_summary_and_a_drift_read_as_a_table_and_lines() {
        let run = RunRow {
            id: 3,
            started_at: 1_000,
            finished_at: Some(3_500),
            target: None,
            apply: false,
            status: "finished".into(),
            counts: json!({"kibo": {"drifted": 1}, "primavera": {"missing": 2}}),
            error: None,
        };
        assert_eq!(
            summary(&run),
            "reconcile run 3 (report only): finished in 2.5s\n\
             target               missing         drifted        unlinked   orphan_marked orphan_unmarked         pending\n\
             kibo                       0               1               0               0               0               0\n\
             primavera                  2               0               0               0               0               0\n"
        );
        let drift = FindingRow {
            seq: 1,
            run_id: 3,
            kind: "drifted".into(),
            target: "kibo".into(),
            user_id: Some("u1".into()),
            remote_id: Some("1001".into()),
            fields: json!([{"field": "firstName", "desired": "Ada", "delivered": "Ada",
                "actual": "Edited"}]),
            decision: "report".into(),
            error: None,
        };
        assert_eq!(
            finding(&drift),
            "drifted          kibo         user=u1 account=1001 decision=report\n    \
             firstName: desired \"Ada\", delivered \"Ada\", actual \"Edited\"\n"
        );
    }
}
