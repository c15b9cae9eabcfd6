//! Local infrastructure for runs and tests on a machine without AWS: a DynamoDB-compatible
//! server (dynoxide, in-process, on 127.0.0.1), the tables created from `infra/tables.json`
//! (the one definition the SAM template shares), and seed data in BatchWriteItem's format.

pub mod emulator;
pub mod seed;
pub mod tables;
