//! The overview's chart: delivered and failed attempts per minute, as server-drawn SVG bars
//! (no script, so it shows with JavaScript off and under the strict CSP).

use maud::{html, Markup};

use crate::ledger::MinuteCount;

/// How far back the chart reaches.
pub(super) const MINUTES: i64 = 180;
const BAR: i64 = 4;
const HEIGHT: u64 = 60;

/// One target's bars for the `MINUTES` minutes up to `now_minute` (a unix minute), failures
/// stacked on deliveries, scaled to the busiest minute.
pub(super) fn per_minute(counts: &[&MinuteCount], now_minute: i64) -> Markup {
    let first = now_minute - MINUTES + 1;
    let peak = counts
        .iter()
        .map(|c| c.delivered + c.failed)
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |n: u64| n * HEIGHT / peak;
    let width = MINUTES * BAR;
    let delivered: u64 = counts.iter().map(|c| c.delivered).sum();
    let failed: u64 = counts.iter().map(|c| c.failed).sum();
    html! {
        svg.chart viewBox=(format!("0 0 {width} {HEIGHT}")) preserveAspectRatio="none"
            role="img" aria-label=(format!("{delivered} delivered and {failed} failed attempts in the last {} hours", MINUTES / 60)) {
            line.axis x1="0" y1=(HEIGHT) x2=(width) y2=(HEIGHT) {}
            @for count in counts.iter().filter(|c| c.minute >= first && c.minute <= now_minute) {
                @let x = (count.minute - first) * BAR;
                @let ok = scale(count.delivered);
                @let bad = scale(count.failed).max(u64::from(count.failed > 0));
                rect.delivered x=(x) y=(HEIGHT - ok) width=(BAR - 1) height=(ok) {
                    title { (count.delivered) " delivered, " (count.failed) " failed" }
                }
                @if bad > 0 {
                    rect.failed x=(x) y=(HEIGHT.saturating_sub(ok + bad)) width=(BAR - 1) height=(bad) {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(minute: i64, delivered: u64, failed: u64) -> MinuteCount {
        MinuteCount {
            target: "kibo".into(),
            minute,
            delivered,
            failed,
        }
    }

    #[test]
    fn bars_scale_to_the_busiest_minute_and_a_single_failure_stays_visible() {
        let counts = [minute(999, 100, 0), minute(1000, 50, 1)];
        let svg = per_minute(&counts.iter().collect::<Vec<_>>(), 1000).into_string();
        assert!(svg.contains(r#"height="60""#), "{svg}");
        assert!(svg.contains(r#"class="failed""#), "{svg}");
        assert!(svg.contains("150 delivered and 1 failed"), "{svg}");
        // Older than the window: not drawn.
        let old = [minute(1000 - MINUTES, 5, 5)];
        let svg = per_minute(&old.iter().collect::<Vec<_>>(), 1000).into_string();
        assert!(!svg.contains("<rect"), "{svg}");
    }
}
