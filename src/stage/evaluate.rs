//! `evaluate`: resolves a profile and the firmware policy into what to build and how to tag it.

use super::{Artifact, Context, Outcome};
use crate::firmware::Boot;
use crate::nix::{flake_ref, MissingFlake};
use crate::profile::{Policy, Profile};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Why a profile cannot be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The profile asks for BIOS without the policy's leave (validation catches this first;
    /// checked again because a stage must never trust that it ran).
    #[error("profile `{0}` boots legacy BIOS but profiles/policy.yaml does not allow it: Hephaestus images boot UEFI")]
    BiosNotAllowed(String),
    /// The flake is a local directory that is not there.
    #[error(transparent)]
    MissingFlake(#[from] MissingFlake),
}

/// A profile resolved against the policy and the pipeline: everything later stages need to know
/// before anything is built.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluated {
    /// Profile name.
    pub profile: String,
    /// What the machine is for.
    pub role: String,
    /// Firmware the image is built for and tagged with.
    pub boot: Boot,
    /// The flake reference given to Nix (`path:/abs/dir` for a local directory).
    pub flake: String,
    /// The flake attribute of the image.
    pub attribute: String,
    /// `<flake>#<attribute>`, what `nix build` receives.
    pub installable: String,
    /// Glance `min_disk` (GiB).
    pub min_disk: Option<u64>,
    /// Glance `min_ram` (MiB).
    pub min_ram: Option<u64>,
    /// The profile's extra properties.
    pub extra_properties: BTreeMap<String, String>,
    /// The profile's extra tags.
    pub extra_tags: Vec<String>,
    /// The profile's description (SCS `image_description`).
    pub description: String,
    /// SCS image metadata, the pipeline's defaults under the profile's values.
    pub metadata: crate::scs::Metadata,
}

/// Resolve `profile` for the flake `flake` (relative to `root`).
pub fn evaluate(
    profile: &Profile,
    policy: &Policy,
    flake: Option<&str>,
    root: &Path,
) -> Result<Evaluated, Error> {
    if !policy.allows(&profile.name, profile.boot) {
        return Err(Error::BiosNotAllowed(profile.name.clone()));
    }
    let flake = flake_ref(root, flake)?;
    Ok(Evaluated {
        profile: profile.name.clone(),
        role: profile.role.clone(),
        boot: profile.boot,
        installable: format!("{flake}#{}", profile.attribute),
        flake,
        attribute: profile.attribute.clone(),
        min_disk: profile.min_disk,
        min_ram: profile.min_ram,
        extra_properties: profile.properties.clone(),
        extra_tags: profile.tags.clone(),
        description: profile.description.clone(),
        metadata: profile.metadata.clone(),
    })
}

/// The stage: fills `evaluated`.
pub fn run(artifact: &mut Artifact, ctx: &Context<'_>) -> Result<Outcome, super::Error> {
    let ev = evaluate(&artifact.profile, ctx.policy, ctx.flake, ctx.root)?;
    let note = format!("{} ({})", ev.installable, ev.boot);
    artifact.evaluated = Some(ev);
    Ok(Outcome::Done(Some(note)))
}
