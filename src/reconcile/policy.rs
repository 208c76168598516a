//! Reconciliation, configuration: what each finding does on a target
//! (`[targets.<name>.reconcile]`) and how often and how hard the bridge looks
//! (`[reconcile]`). Read by the config layer, applied by the run.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// An account the ledger says was delivered is gone from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    #[default]
    Recreate,
    Report,
}

/// A managed field holds another value on the target than the bridge delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnDrift {
    Repair,
    #[default]
    Report,
}

/// An account carrying the bridge's mark that no SCIM user accounts for. Accounts without
/// the mark were made by hand and are never touched, whatever this says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOrphan {
    #[default]
    Report,
    Disable,
    Delete,
}

/// One target's `[targets.<name>.reconcile]` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Policy {
    pub on_missing: OnMissing,
    pub on_drift: OnDrift,
    pub on_orphan: OnOrphan,
}

/// The `[reconcile]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReconcileSettings {
    /// How often the running bridge reconciles every target: `off`, `hourly`, `daily`, or
    /// a number with a unit (`30m`, `6h`, `2d`).
    pub interval: Interval,
    /// Whether a scheduled run carries out each target's policies (as `reconcile --apply`)
    /// or only reports its findings.
    pub apply_on_schedule: bool,
    /// The share of each target's `rate_limit_per_second` a reconcile may use for its
    /// reads; the rest stays for deliveries.
    pub rate_share: f64,
    /// Accounts compared against the ledger per batch (one ledger read per batch).
    pub batch: usize,
    /// Days of runs and their findings to keep.
    pub retention_days: u64,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        ReconcileSettings {
            interval: Interval(None),
            apply_on_schedule: true,
            rate_share: 0.5,
            batch: 500,
            retention_days: 30,
        }
    }
}

/// A schedule period, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(pub Option<Duration>);

impl Interval {
    pub(crate) fn parse(text: &str) -> Result<Interval, String> {
        let text = text.trim();
        let seconds = match text {
            "off" => return Ok(Interval(None)),
            "hourly" => 3600,
            "daily" => 86_400,
            _ => {
                let split = text
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(text.len());
                let (number, unit) = text.split_at(split);
                let number: u64 = number.parse().map_err(|_| unreadable(text))?;
                let unit = match unit {
                    "s" => 1,
                    "m" => 60,
                    "h" => 3600,
                    "d" => 86_400,
                    _ => return Err(unreadable(text)),
                };
                number * unit
            }
        };
        if seconds < 60 {
            return Err(format!("`{text}` is shorter than a minute"));
        }
        Ok(Interval(Some(Duration::from_secs(seconds))))
    }
}

fn unreadable(text: &str) -> String {
    format!("`{text}` is not off, hourly, daily or a number with s, m, h or d (e.g. 6h)")
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Interval::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let cases = [
            ("off", Ok(None)),
            ("daily", Ok(Some(86_400))),
            ("hourly", Ok(Some(3600))),
            ("30m", Ok(Some(1800))),
            ("6h", Ok(Some(21_600))),
            ("2d", Ok(Some(172_800))),
            ("10s", Err("shorter than a minute")),
            ("soon", Err("is not off")),
            ("6 h", Err("is not off")),
        ];
        for (text, want) in cases {
            let got = Interval::parse(text).map(|i| i.0.map(|d| d.as_secs()));
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{text}: {got}"),
                (got, want) => panic!("{text}: {got:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn policies_default_to_repairing_only_what_vanished() {
        let policy: Policy = toml::from_str("").unwrap();
        assert_eq!(policy.on_missing, OnMissing::Recreate);
        assert_eq!(policy.on_drift, OnDrift::Report);
        assert_eq!(policy.on_orphan, OnOrphan::Report);
        let typo = toml::from_str::<Policy>("on_drfit = \"repair\"").unwrap_err();
        assert!(typo.to_string().contains("on_drfit"), "{typo}");
        let word = toml::from_str::<Policy>("on_orphan = \"burn\"").unwrap_err();
        assert!(word.to_string().contains("burn"), "{word}");
    }
}
