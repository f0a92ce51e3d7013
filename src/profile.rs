//! A profile and the platform's firmware policy, as validated values: what every stage knows
//! about the machine an image is for. Loading and checking them from YAML is the pipeline
//! floor's job; this file only holds the result.

use crate::firmware::Boot;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A profile after validation: plain values, ready for the stages.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Profile {
    /// Profile name (= file name).
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// What the machine is for.
    pub role: String,
    /// Firmware, already checked against the policy.
    pub boot: Boot,
    /// Flake attribute of the image.
    pub attribute: String,
    /// Glance `min_disk` (GiB).
    pub min_disk: Option<u64>,
    /// Glance `min_ram` (MiB).
    pub min_ram: Option<u64>,
    /// Extra Glance properties.
    pub properties: BTreeMap<String, String>,
    /// Extra Glance tags.
    pub tags: Vec<String>,
    /// The file it was read from.
    pub file: PathBuf,
    /// SCS image metadata: the profile's own values, then (in a plan) the pipeline's
    /// defaults under them.
    pub metadata: crate::scs::Metadata,
}

/// The platform policy after validation.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Profiles allowed to boot legacy BIOS.
    pub legacy_bios: BTreeSet<String>,
}

impl Policy {
    /// Whether `profile` may boot with `boot` firmware: UEFI always, legacy BIOS only when
    /// the policy lists the profile.
    pub fn allows(&self, profile: &str, boot: Boot) -> bool {
        boot == Boot::Uefi || self.legacy_bios.contains(profile)
    }
}
