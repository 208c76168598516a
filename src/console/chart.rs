//! The overview's chart: delivered and failed attempts per minute, as server-drawn SVG bars
//! (no script, so it shows with JavaScript off and under the strict CSP).

use std::sync::Mutex;

use maud::{html, Markup};

use crate::ledger::MinuteCount;

/// How far back the chart reaches.
pub(super) const MINUTES: i64 = 180;
/// Minutes still taking attempts: an attempt is recorded when it ends, so the minute before
/// the current one can still gain some.
const OPEN_MINUTES: i64 = 2;

/// The counts of minutes that are over. The overview refreshes every few seconds in every
/// open console; with these kept, each refresh reads the history of the last minutes only,
/// not of three hours, which after a bulk load is millions of attempts.
#[derive(Default)]
pub(super) struct MinuteCache {
    cached: Mutex<Cached>,
}

#[derive(Default)]
struct Cached {
    /// The first minute not cached yet.
    from: i64,
    closed: Vec<MinuteCount>,
}

fn window_start(now_minute: i64) -> i64 {
    now_minute - MINUTES + 1
}

impl MinuteCache {
    /// Unix milliseconds from which the history must be read at `now_minute`.
    pub(super) fn read_from(&self, now_minute: i64) -> i64 {
        let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached.from.max(window_start(now_minute)) * 60_000
    }

    /// The chart's counts: the cached minutes and `fresh` (read from `read_from`), whose
    /// minutes that are now over join the cache. Concurrent callers may merge in any order.
    pub(super) fn merge(&self, fresh: Vec<MinuteCount>, now_minute: i64) -> Vec<MinuteCount> {
        let start = window_start(now_minute);
        let close_before = now_minute - OPEN_MINUTES + 1;
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        cached.closed.retain(|count| count.minute >= start);
        let from = cached.from.max(start);
        cached.closed.extend(
            fresh
                .iter()
                .filter(|count| count.minute >= from && count.minute < close_before)
                .cloned(),
        );
        cached.from = from.max(close_before);
        let open_from = cached.from;
        let mut counts = cached.closed.clone();
        counts.extend(fresh.into_iter().filter(|count| count.minute >= open_from));
        counts.sort_by(|a, b| a.target.cmp(&b.target).then(a.minute.cmp(&b.minute)));
        counts
    }
}
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

    #[test]
    fn minutes_that_are_over_are_read_once_and_the_open_ones_every_time() {
        let cache = MinuteCache::default();
        let now = 10_000;
        assert_eq!(cache.read_from(now), window_start(now) * 60_000);
        let first = cache.merge(
            vec![
                minute(now - 5, 3, 0),
                minute(now - 1, 1, 0),
                minute(now, 2, 1),
            ],
            now,
        );
        assert_eq!(first.len(), 3);
        // Only the open minutes are read again; the one five minutes ago comes from memory.
        assert_eq!(cache.read_from(now), (now - 1) * 60_000);
        let again = cache.merge(vec![minute(now - 1, 4, 0), minute(now, 7, 0)], now);
        let shown: Vec<(i64, u64)> = again.iter().map(|c| (c.minute, c.delivered)).collect();
        assert_eq!(shown, [(now - 5, 3), (now - 1, 4), (now, 7)]);
        // A late, stale read merged after a newer one adds nothing twice.
        let stale = cache.merge(vec![minute(now - 5, 3, 0), minute(now, 7, 0)], now);
        assert_eq!(stale.iter().filter(|c| c.minute == now - 5).count(), 1);
        // Three hours on, everything cached has left the window.
        let later = now + MINUTES + 10;
        assert_eq!(cache.read_from(later), window_start(later) * 60_000);
        assert!(cache.merge(Vec::new(), later).is_empty());
    }

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
