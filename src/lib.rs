//! Hephaestus image pipeline: evaluates NixOS profiles, builds their images with Nix, tags
//! their firmware, verifies them and publishes them into OpenStack Glance.
//!
//! `nix`, `glance` and `boot` are the only modules that touch the outside world (processes,
//! HTTP, QEMU); `stage` orchestrates them and `pipeline` loads, validates and runs the YAML.

pub mod boot;
pub mod firmware;
pub mod glance;
pub mod image;
pub mod lifecycle;
pub mod nix;
pub mod pipeline;
pub mod stage;
