//! Prometheus metrics, held in an explicit registry (no global recorder) and rendered at
//! `/metrics`. Queue depth and lag are read from the ledger at scrape time, so they are
//! never stale. Who may scrape is decided here too: the configured token, or loopback only.

use std::net::IpAddr;
use std::sync::atomic::AtomicU64;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::TrustedProxies;
use crate::ledger::{CircuitState, Omissions, RunRow, TargetLag};
use crate::reconcile::compare::FindingKind;
use crate::scim::auth::Authenticator;
use crate::scim::error::ScimError;

/// Who may read `/metrics`: queue depths, target names and lag say a lot about an
/// organisation, so the endpoint is not open to whoever reaches the SCIM listener.
pub(crate) enum ScrapeAccess {
    /// Scrapes carry this bearer token (`[metrics] token_*`).
    Token(Authenticator),
    /// No token configured: only peers on this host that are not a trusted proxy (a reverse
    /// proxy on the same host would otherwise make every caller look local).
    LoopbackOnly,
}

impl ScrapeAccess {
    /// The answer to send instead of the metrics, when this scrape may not read them.
    pub(crate) fn refusal(
        &self,
        req: &HttpRequest,
        address: IpAddr,
        proxies: &TrustedProxies,
    ) -> Option<HttpResponse> {
        match self {
            ScrapeAccess::Token(auth) => {
                let authorization = req
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok());
                match auth.authenticate(address, authorization) {
                    Ok(_) => None,
                    Err(ScimError::RateLimited { retry_after_secs }) => Some(
                        HttpResponse::TooManyRequests()
                            .insert_header((header::RETRY_AFTER, retry_after_secs.to_string()))
                            .body("too many failed authentications\n"),
                    ),
                    Err(_) => Some(
                        HttpResponse::Unauthorized()
                            .insert_header((
                                header::WWW_AUTHENTICATE,
                                "Bearer realm=\"scim-bridge-metrics\"",
                            ))
                            .body("a valid metrics bearer token is required\n"),
                    ),
                }
            }
            ScrapeAccess::LoopbackOnly => {
                let local = req
                    .peer_addr()
                    .map(|peer| peer.ip().to_canonical())
                    .is_some_and(|peer| peer.is_loopback() && !proxies.trusts(peer));
                (!local).then(|| {
                    HttpResponse::Forbidden().body(
                        "metrics are served to this host only; configure [metrics] token_file \
                         (or token_env, token_sha256) to scrape from elsewhere\n",
                    )
                })
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct WriteLabels {
    pub resource: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DeliveryLabels {
    pub target: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CircuitLabels {
    pub target: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct QueueLabels {
    pub target: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OmissionLabels {
    pub target: String,
    pub field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct FindingLabels {
    pub target: String,
    pub kind: &'static str,
}

pub(crate) struct Metrics {
    registry: Registry,
    reconcile_findings: Family<FindingLabels, Gauge>,
    reconcile_last_run: Gauge,
    pub accepted_writes: Family<WriteLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub delivery_seconds: Family<TargetLabels, Histogram>,
    queue: Family<QueueLabels, Gauge>,
    lag_seconds: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    omissions: Family<OmissionLabels, Gauge>,
    circuit: Family<CircuitLabels, Gauge>,
    circuit_failures: Family<TargetLabels, Gauge>,
    guard_held: Family<TargetLabels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scim_bridge");
        let accepted_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "accepted_writes",
            "SCIM writes committed, by resource and operation",
            accepted_writes.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by target and outcome (delivered, retry, rejected, dead)",
            deliveries.clone(),
        );
        let delivery_seconds = Family::<TargetLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "delivery_duration_seconds",
            "Time one delivery attempt took, including the target's answer",
            delivery_seconds.clone(),
        );
        let queue = Family::<QueueLabels, Gauge>::default();
        registry.register(
            "delivery_queue",
            "Deliveries per target and state",
            queue.clone(),
        );
        let lag_seconds = Family::<TargetLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "delivery_lag_seconds",
            "Age of the oldest change a target has not received yet",
            lag_seconds.clone(),
        );
        let omissions = Family::<OmissionLabels, Gauge>::default();
        registry.register(
            "mapping_omissions",
            "Users sent without a field because their value could not be mapped, by target and \
             field",
            omissions.clone(),
        );
        let circuit = Family::<CircuitLabels, Gauge>::default();
        registry.register(
            "target_circuit",
            "1 for the state each target's circuit is in (closed, open, half_open), 0 for the others",
            circuit.clone(),
        );
        let circuit_failures = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "target_circuit_failures",
            "Target-level failures (throttling, down, unreachable) since the target last worked",
            circuit_failures.clone(),
        );
        let guard_held = Family::<TargetLabels, Gauge>::default();
        registry.register(
            "guard_held",
            "Disables and deletes the deprovisioning guard holds for an operator, per target; \
             above 0 the target is held",
            guard_held.clone(),
        );
        let reconcile_findings = Family::<FindingLabels, Gauge>::default();
        registry.register(
            "reconcile_findings",
            "Findings of the last finished reconcile run, by target and kind",
            reconcile_findings.clone(),
        );
        let reconcile_last_run = Gauge::default();
        registry.register(
            "reconcile_last_run_timestamp_seconds",
            "When the last reconcile run finished (Unix time); 0 before the first",
            reconcile_last_run.clone(),
        );
        Metrics {
            registry,
            guard_held,
            reconcile_findings,
            reconcile_last_run,
            circuit,
            circuit_failures,
            accepted_writes,
            deliveries,
            delivery_seconds,
            queue,
            lag_seconds,
            omissions,
        }
    }

    /// Sets the omission gauges from the ledger's counts; a field no longer left out for
    /// anyone disappears rather than staying at its last count.
    pub(crate) fn set_omissions(&self, rows: &[Omissions]) {
        self.omissions.clear();
        for row in rows {
            self.omissions
                .get_or_create(&OmissionLabels {
                    target: row.target.clone(),
                    field: row.field.clone(),
                })
                .set(row.users as i64);
        }
    }

    /// Sets the reconcile gauges from the last finished run: every kind of every target it
    /// covered, zero where it found nothing.
    pub(crate) fn set_reconcile(&self, run: &RunRow, targets: &[String]) {
        self.reconcile_findings.clear();
        let covered = targets
            .iter()
            .filter(|t| run.target.as_ref().is_none_or(|only| only == *t));
        for target in covered {
            for kind in FindingKind::ALL {
                let count = run.counts[target.as_str()][kind.as_str()]
                    .as_i64()
                    .unwrap_or(0);
                self.reconcile_findings
                    .get_or_create(&FindingLabels {
                        target: target.clone(),
                        kind: kind.as_str(),
                    })
                    .set(count);
            }
        }
        self.reconcile_last_run
            .set(run.finished_at.unwrap_or(run.started_at) / 1000);
    }

    pub(crate) fn record_write(&self, resource: &'static str, operation: &'static str) {
        self.accepted_writes
            .get_or_create(&WriteLabels {
                resource,
                operation,
            })
            .inc();
    }

    pub(crate) fn record_delivery(&self, target: &str, outcome: &str, seconds: f64) {
        self.deliveries
            .get_or_create(&DeliveryLabels {
                target: target.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        self.delivery_seconds
            .get_or_create(&TargetLabels {
                target: target.to_owned(),
            })
            .observe(seconds);
    }

    /// Renders the text exposition, after setting the queue gauges from `lag`.
    pub(crate) fn render(&self, lag: &[TargetLag], now_millis: i64) -> String {
        for t in lag {
            for (state, value) in [
                ("pending", t.pending),
                ("retrying", t.retrying),
                ("rejected", t.rejected),
                ("dead", t.dead),
                ("delivered", t.delivered),
                ("held", t.held),
            ] {
                self.queue
                    .get_or_create(&QueueLabels {
                        target: t.target.clone(),
                        state,
                    })
                    .set(value as i64);
            }
            let lag_seconds = t
                .oldest_change_at
                .map(|at| ((now_millis - at).max(0) as f64) / 1000.0)
                .unwrap_or(0.0);
            self.lag_seconds
                .get_or_create(&TargetLabels {
                    target: t.target.clone(),
                })
                .set(lag_seconds);
            for state in CircuitState::ALL {
                self.circuit
                    .get_or_create(&CircuitLabels {
                        target: t.target.clone(),
                        state: state.as_str(),
                    })
                    .set(i64::from(t.circuit.state == state));
            }
            self.circuit_failures
                .get_or_create(&TargetLabels {
                    target: t.target.clone(),
                })
                .set(i64::from(t.circuit.failures));
            self.guard_held
                .get_or_create(&TargetLabels {
                    target: t.target.clone(),
                })
                .set(t.held as i64);
        }
        let mut out = String::new();
        if let Err(err) = encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_finished_reconcile_sets_every_kind_of_every_target_it_covered() {
        let metrics = Metrics::new();
        let run = RunRow {
            id: 1,
            started_at: 1_000,
            finished_at: Some(9_000),
            target: None,
            apply: false,
            status: "finished".into(),
            counts: serde_json::json!({"kibo": {"missing": 2}}),
            error: None,
        };
        metrics.set_reconcile(&run, &["appgate".into(), "kibo".into()]);
        let text = metrics.render(&[], 10_000);
        for line in [
            "scim_bridge_reconcile_findings{target=\"kibo\",kind=\"missing\"} 2",
            "scim_bridge_reconcile_findings{target=\"kibo\",kind=\"drifted\"} 0",
            "scim_bridge_reconcile_findings{target=\"appgate\",kind=\"orphan_marked\"} 0",
            "scim_bridge_reconcile_last_run_timestamp_seconds 9",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
    }

    #[test]
    fn renders_counters_and_queue_gauges() {
        let metrics = Metrics::new();
        metrics.record_write("User", "create");
        metrics.record_delivery("kibo", "delivered", 0.01);
        let lag = [TargetLag {
            target: "kibo".into(),
            pending: 3,
            held: 7,
            oldest_change_at: Some(1_000),
            circuit: crate::ledger::TargetCircuit {
                state: CircuitState::Open,
                failures: 5,
                ..Default::default()
            },
            ..TargetLag::default()
        }];
        let text = metrics.render(&lag, 6_000);
        assert!(
            text.contains(
                "scim_bridge_accepted_writes_total{resource=\"User\",operation=\"create\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("scim_bridge_deliveries_total{target=\"kibo\",outcome=\"delivered\"} 1")
        );
        assert!(text.contains("scim_bridge_delivery_queue{target=\"kibo\",state=\"pending\"} 3"));
        assert!(text.contains("scim_bridge_delivery_lag_seconds{target=\"kibo\"} 5.0"));
        assert!(text.contains("scim_bridge_target_circuit{target=\"kibo\",state=\"open\"} 1"));
        assert!(text.contains("scim_bridge_target_circuit{target=\"kibo\",state=\"closed\"} 0"));
        assert!(text.contains("scim_bridge_target_circuit_failures{target=\"kibo\"} 5"));
        assert!(text.contains("scim_bridge_guard_held{target=\"kibo\"} 7"));
        assert!(text.contains("scim_bridge_delivery_queue{target=\"kibo\",state=\"held\"} 7"));
    }

    #[test]
    fn omissions_are_gauges_per_target_and_field_that_go_away_at_zero() {
        let metrics = Metrics::new();
        let row = |field: &str, users| Omissions {
            target: "primavera".into(),
            field: field.into(),
            users,
            example: "'x' is not a readable phone number".into(),
        };
        metrics.set_omissions(&[row("mobile", 412), row("title", 3)]);
        let text = metrics.render(&[], 0);
        assert!(
            text.contains(
                "scim_bridge_mapping_omissions{target=\"primavera\",field=\"mobile\"} 412"
            ),
            "{text}"
        );
        metrics.set_omissions(&[row("title", 2)]);
        let text = metrics.render(&[], 0);
        assert!(!text.contains("field=\"mobile\""), "{text}");
        assert!(
            text.contains("scim_bridge_mapping_omissions{target=\"primavera\",field=\"title\"} 2")
        );
    }
}
