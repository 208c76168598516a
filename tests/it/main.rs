//! The one integration-test binary: each module below is a suite.

mod mapping_cli;
mod mapping_golden;
