//! Shared test support.
#![allow(dead_code)]

pub mod fixtures;
pub mod servers;
