//! Prometheus metrics, held in an explicit registry (no global recorder) and rendered at
//! `/metrics`. Queue depth and lag are read from the ledger at scrape time, so they are
//! never stale.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::ledger::{CircuitState, TargetLag};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub resource: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub target: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TargetLabels {
    pub target: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CircuitLabels {
    pub target: String,
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub target: String,
    pub state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub accepted_writes: Family<WriteLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub delivery_seconds: Family<TargetLabels, Histogram>,
    queue: Family<QueueLabels, Gauge>,
    lag_seconds: Family<TargetLabels, Gauge<f64, AtomicU64>>,
    circuit: Family<CircuitLabels, Gauge>,
    circuit_failures: Family<TargetLabels, Gauge>,
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
    pub fn new() -> Metrics {
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
        Metrics {
            registry,
            circuit,
            circuit_failures,
            accepted_writes,
            deliveries,
            delivery_seconds,
            queue,
            lag_seconds,
        }
    }

    pub fn record_write(&self, resource: &'static str, operation: &'static str) {
        self.accepted_writes
            .get_or_create(&WriteLabels {
                resource,
                operation,
            })
            .inc();
    }

    pub fn record_delivery(&self, target: &str, outcome: &str, seconds: f64) {
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
    pub fn render(&self, lag: &[TargetLag], now_millis: i64) -> String {
        for t in lag {
            for (state, value) in [
                ("pending", t.pending),
                ("retrying", t.retrying),
                ("rejected", t.rejected),
                ("dead", t.dead),
                ("delivered", t.delivered),
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
    fn renders_counters_and_queue_gauges() {
        let metrics = Metrics::new();
        metrics.record_write("User", "create");
        metrics.record_delivery("kibo", "delivered", 0.01);
        let lag = [TargetLag {
            target: "kibo".into(),
            pending: 3,
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
    }
}
