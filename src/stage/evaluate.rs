//! `evaluate`: resolves a profile and the firmware policy into what to build and how to tag it.

use crate::firmware::Boot;
use crate::pipeline::{Plan, Policy, Profile};
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
    #[error(
        "flake directory {0} does not exist; pass --flake DIR or set `flake:` in the pipeline"
    )]
    MissingFlake(String),
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
}

/// The flake reference for `flake` (a directory or a reference), relative to `root`.
///
/// A local directory becomes `path:<absolute dir>`: a `git+file` flake would hide files not yet
/// added to git, which surprises people editing a profile; `path:` copies what is there.
pub fn flake_ref(root: &Path, flake: Option<&str>) -> Result<String, Error> {
    let flake = flake.unwrap_or("nix");
    if flake.contains(':') {
        return Ok(flake.to_string());
    }
    let dir = root.join(flake);
    match dir.canonicalize() {
        Ok(abs) if abs.is_dir() => Ok(format!("path:{}", abs.display())),
        _ => Err(Error::MissingFlake(dir.display().to_string())),
    }
}

/// Resolve `profile` for `plan`.
pub fn evaluate(
    profile: &Profile,
    policy: &Policy,
    plan: &Plan,
    root: &Path,
) -> Result<Evaluated, Error> {
    if profile.boot == Boot::Bios && !policy.legacy_bios.contains(&profile.name) {
        return Err(Error::BiosNotAllowed(profile.name.clone()));
    }
    let flake = flake_ref(root, plan.flake.as_deref())?;
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
    })
}
