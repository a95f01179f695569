//! Shared test support.
#![allow(dead_code)]

pub mod cli;
pub mod fixtures;
pub mod servers;
pub mod wat;
