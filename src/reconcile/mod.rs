//! Reconciliation: reads back what each target holds and compares it, per (user, target),
//! with what the ledger wants (desired) and last delivered; carries out each target's
//! policy by leaving repairs as due deliveries for the fan-out workers.

pub(crate) mod compare;
pub mod policy;
