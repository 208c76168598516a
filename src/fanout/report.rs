//! Plain-text renderings of the operator's view, for the `ledger` CLI.

use std::fmt::Write as _;

use crate::fanout::operator::{Held, UserStatus};
use crate::ledger::{Audited, CircuitState, Delivery, Omissions, TargetCircuit, TargetLag};

fn when(millis: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(millis.max(0) as u64);
    crate::scim::service::timestamp(at)
}

/// Whether a target takes deliveries, and if not since when, until when and why.
fn circuit(circuit: &TargetCircuit) -> String {
    let since = circuit.opened_at.map(when).unwrap_or_else(|| "-".into());
    let why = match (circuit.last_status, circuit.last_error.as_deref()) {
        (_, Some(error)) => error.to_owned(),
        (Some(status), None) => status.to_string(),
        (None, None) => String::new(),
    };
    match circuit.state {
        CircuitState::Closed => "closed".into(),
        CircuitState::Open => format!(
            "open since {since}, next probe {}, {} failures: {why}",
            circuit.retry_at.map(when).unwrap_or_else(|| "now".into()),
            circuit.failures
        ),
        CircuitState::HalfOpen => format!(
            "half-open since {since}, probing, {} failures: {why}",
            circuit.failures
        ),
    }
}

pub(crate) fn lag(lag: &[TargetLag]) -> String {
    let mut out = format!(
        "{:<14} {:>9} {:>9} {:>9} {:>9} {:>10}  {:<24}  {}\n",
        "target",
        "pending",
        "retrying",
        "rejected",
        "dead",
        "delivered",
        "oldest undelivered change",
        "circuit"
    );
    for t in lag {
        let oldest = t.oldest_change_at.map(when).unwrap_or_else(|| "-".into());
        let name = if t.paused {
            format!("{} (paused)", t.target)
        } else {
            t.target.clone()
        };
        let held = if t.held > 0 {
            format!(
                "  HELD: {} deprovisions wait for `ledger held --target {}`",
                t.held, t.target
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{name:<14} {:>9} {:>9} {:>9} {:>9} {:>10}  {oldest:<25}  {}{held}",
            t.pending,
            t.retrying,
            t.rejected,
            t.dead,
            t.delivered,
            circuit(&t.circuit)
        );
    }
    out
}

pub(crate) fn deliveries(rows: &[Delivery]) -> String {
    if rows.is_empty() {
        return "no deliveries in that state\n".into();
    }
    let mut out = String::new();
    for d in rows {
        let _ = writeln!(
            out,
            "{} {:<12} {:<9} {:<8} attempts={} status={} {}",
            d.desired.user_id,
            d.desired.target,
            d.state.as_str(),
            d.desired.operation.as_str(),
            d.attempts,
            d.last_status
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            d.last_error.as_deref().unwrap_or(""),
        );
        for w in &d.warnings {
            let _ = writeln!(out, "  warning: '{}' left out: {}", w.field, w.reason);
        }
    }
    out
}

pub(crate) fn held(held: &Held) -> String {
    if held.held == 0 {
        return format!("the guard holds nothing on {}\n", held.target);
    }
    let mut out = format!(
        "{} deprovisions held on {}: `ledger release {1}` sends them, `ledger discard {1}` \
         drops them\n",
        held.held, held.target
    );
    out.push_str(&deliveries(&held.deliveries));
    if (held.deliveries.len() as u64) < held.held {
        let _ = writeln!(out, "(the first {} listed)", held.deliveries.len());
    }
    out
}

pub(crate) fn audit(entries: &[Audited]) -> String {
    if entries.is_empty() {
        return "no audit entries\n".into();
    }
    let mut out = String::new();
    for a in entries {
        let e = &a.entry;
        let _ = writeln!(
            out,
            "{:>6} {} {:<20} {:<15} {:<8} {} {} {}",
            a.seq,
            when(e.at),
            e.actor,
            e.action.as_str(),
            e.outcome.as_str(),
            e.target.as_deref().unwrap_or("-"),
            e.user_id.as_deref().unwrap_or("-"),
            e.detail
        );
    }
    out
}

pub(crate) fn omissions(rows: &[Omissions]) -> String {
    if rows.is_empty() {
        return "no user is sent without a field\n".into();
    }
    let mut out = String::new();
    for o in rows {
        let _ = writeln!(
            out,
            "{:<12} {:>7} {} without {}, e.g. {}",
            o.target,
            o.users,
            if o.users == 1 { "user" } else { "users" },
            o.field,
            o.example
        );
    }
    out
}

pub(crate) fn user(status: &UserStatus) -> String {
    let mut out = format!("user {}\n", status.user_id);
    if status.planning {
        out.push_str("waiting to be planned: the latest change is not in the rows below yet\n");
    }
    out.push_str(&deliveries(&status.deliveries));
    for a in &status.adoptions {
        let changed = if a.changed.is_empty() {
            "nothing".to_owned()
        } else {
            a.changed.join(", ")
        };
        let _ = writeln!(
            out,
            "adopted on {} {}: existing account {}; the first update changed {changed}",
            a.target,
            when(a.adopted_at),
            a.remote_id,
        );
    }
    if !status.history.is_empty() {
        out.push_str("history (newest first):\n");
        for a in &status.history {
            let _ = writeln!(
                out,
                "  {} {:<12} {:<8} {:<9} status={} {}ms {}",
                when(a.at),
                a.target,
                a.operation,
                a.outcome,
                a.status
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                a.duration_ms,
                a.error.as_deref().unwrap_or(""),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::Adoption;

    #[test]
    fn a_user_shows_each_takeover_with_what_its_first_update_changed() {
        let status = UserStatus {
            user_id: "u1".into(),
            deliveries: Vec::new(),
            history: Vec::new(),
            adoptions: vec![
                Adoption {
                    user_id: "u1".into(),
                    target: "kibo".into(),
                    remote_id: "k-77".into(),
                    adopted_at: 0,
                    changed: vec!["firstName".into(), "lastName".into()],
                },
                Adoption {
                    user_id: "u1".into(),
                    target: "appgate".into(),
                    remote_id: "a-1".into(),
                    adopted_at: 0,
                    changed: Vec::new(),
                },
            ],
            planning: true,
        };
        let text = user(&status);
        assert!(
            text.contains("waiting to be planned: the latest change is not in the rows below yet"),
            "{text}"
        );
        assert!(
            text.contains("adopted on kibo 1970-01-01T00:00:00")
                && text.contains(
                    "existing account k-77; the first update changed firstName, lastName"
                ),
            "{text}"
        );
        assert!(
            text.contains("a-1; the first update changed nothing"),
            "{text}"
        );
    }

    #[test]
    fn status_shows_each_targets_circuit() {
        let open = TargetLag {
            target: "kibo".into(),
            retrying: 20,
            circuit: TargetCircuit {
                state: CircuitState::Open,
                failures: 7,
                opened_at: Some(0),
                retry_at: Some(65_000),
                last_status: Some(503),
                last_error: Some("503: the target is down".into()),
                ..TargetCircuit::default()
            },
            ..TargetLag::default()
        };
        let closed = TargetLag {
            target: "appgate".into(),
            ..TargetLag::default()
        };
        let text = lag(&[open, closed]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("circuit"), "{text}");
        assert!(
            lines[1].ends_with(
                "open since 1970-01-01T00:00:00Z, next probe 1970-01-01T00:01:05Z, \
                 7 failures: 503: the target is down"
            ),
            "{text}"
        );
        assert!(lines[2].ends_with("closed"), "{text}");
    }
}
