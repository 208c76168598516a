//! Per-target switches the workers obey: the operator's pause and the circuit each worker
//! records, kept in the ledger so the CLI in another process sees them and a restart resumes.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use rusqlite::{params, OptionalExtension};
use serde::Serialize;

use super::{LedgerError, Store};

/// Whether deliveries flow to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CircuitState {
    /// Deliveries flow.
    #[default]
    Closed,
    /// The target is down or throttling: nothing is sent before `retry_at`.
    Open,
    /// One probe delivery is out; its answer closes or reopens the circuit.
    HalfOpen,
}

impl CircuitState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }

    pub(crate) const ALL: [CircuitState; 3] = [
        CircuitState::Closed,
        CircuitState::Open,
        CircuitState::HalfOpen,
    ];

    fn parse(stored: &str) -> Option<CircuitState> {
        Self::ALL.into_iter().find(|state| state.as_str() == stored)
    }
}

/// A circuit state no build wrote is an error, not a closed circuit.
impl FromSql for CircuitState {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        CircuitState::parse(text).ok_or_else(|| {
            FromSqlError::Other(format!("unknown circuit state {text:?} in the ledger").into())
        })
    }
}

/// The circuit of one target as last recorded by its worker.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub(crate) struct TargetCircuit {
    pub state: CircuitState,
    /// Target-level failures (throttling, down, unreachable) since the last answer that
    /// showed the target working.
    pub failures: u32,
    /// Probes that failed since the circuit opened; the probe cadence grows with them.
    pub failed_probes: u32,
    pub opened_at: Option<i64>,
    /// When the next probe may go, while open.
    pub retry_at: Option<i64>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

impl Store<'_> {
    pub(crate) fn is_paused(&self, target: &str) -> Result<bool, LedgerError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT paused FROM target_controls WHERE target = ?1")?;
        Ok(stmt
            .query_row([target], |row| row.get::<_, bool>(0))
            .optional()?
            .unwrap_or(false))
    }

    pub(crate) fn set_paused(&self, target: &str, paused: bool) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO target_controls (target, paused) VALUES (?1, ?2) \
                 ON CONFLICT (target) DO UPDATE SET paused = ?2",
            )?
            .execute(params![target, paused])?;
        Ok(())
    }

    /// The circuit of `target` as its worker last recorded it; `None` before it ever opened.
    pub(crate) fn circuit(&self, target: &str) -> Result<Option<TargetCircuit>, LedgerError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT state, failures, failed_probes, opened_at, retry_at, last_status, last_error, \
             updated_at FROM target_circuits WHERE target = ?1",
        )?;
        Ok(stmt
            .query_row([target], |row| {
                Ok(TargetCircuit {
                    state: row.get(0)?,
                    failures: row.get(1)?,
                    failed_probes: row.get(2)?,
                    opened_at: row.get(3)?,
                    retry_at: row.get(4)?,
                    last_status: row.get(5)?,
                    last_error: row.get(6)?,
                    updated_at: row.get(7)?,
                })
            })
            .optional()?)
    }

    pub(crate) fn set_circuit(
        &self,
        target: &str,
        circuit: &TargetCircuit,
    ) -> Result<(), LedgerError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO target_circuits (target, state, failures, failed_probes, opened_at, \
                 retry_at, last_status, last_error, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (target) DO UPDATE SET \
                 state = ?2, failures = ?3, failed_probes = ?4, opened_at = ?5, retry_at = ?6, \
                 last_status = ?7, last_error = ?8, updated_at = ?9",
            )?
            .execute(params![
                target,
                circuit.state.as_str(),
                circuit.failures,
                circuit.failed_probes,
                circuit.opened_at,
                circuit.retry_at,
                circuit.last_status,
                circuit.last_error,
                circuit.updated_at,
            ])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_circuit_states_are_read_strictly() {
        for state in CircuitState::ALL {
            assert_eq!(CircuitState::parse(state.as_str()), Some(state));
        }
        assert_eq!(CircuitState::parse("halfopen"), None);
        assert_eq!(CircuitState::parse(""), None);
    }
}
