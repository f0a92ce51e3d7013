//! The project under a root: its profiles and firmware policy, read and checked, and where
//! its pipelines are.

use super::diagnostic::{parse_yaml, Diagnostic, LoadError};
use super::spec::{location_of, ImageMetadataSpec, PolicySpec, ProfileSpec};
use crate::lifecycle::{reserved_key, reserved_tag, ReservedKey};
use crate::profile::{Policy, Profile};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Everything under a root that is not a pipeline: the profiles and the policy.
#[derive(Debug)]
pub struct Project {
    /// The root directory (`--root`).
    pub root: PathBuf,
    /// Valid profiles by name.
    pub profiles: BTreeMap<String, Profile>,
    /// Names of profile files that exist, valid or not (so a broken profile is not also
    /// reported as unknown by every pipeline that names it).
    pub profile_files: BTreeSet<String>,
    /// The firmware policy.
    pub policy: Policy,
}

pub(crate) fn read_text(path: &Path) -> Result<String, LoadError> {
    use crate::bounded::{self, Error};
    bounded::read_text(path, bounded::MAX_CONFIG_BYTES).map_err(|e| match e {
        Error::Io(source) => LoadError::Read {
            path: path.to_path_buf(),
            source,
        },
        source => LoadError::Refused {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// `*.yaml` files of a directory, sorted, with their stems.
fn yaml_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let entries = std::fs::read_dir(dir).map_err(|source| LoadError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| LoadError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = entry.path();
        let is_yaml = matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        );
        if let (true, Some(stem)) = (is_yaml, path.file_stem().and_then(|s| s.to_str())) {
            files.push((stem.to_string(), path));
        }
    }
    files.sort();
    Ok(files)
}

/// The path shown in messages: relative to the root when the file is under it.
pub(crate) fn display_path(root: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(root)
        .map(Path::to_path_buf)
        .unwrap_or_else(|_| path.to_path_buf())
}

impl Project {
    /// Read `profiles/*.yaml` and `profiles/policy.yaml` under `root`. Problems are returned
    /// alongside whatever was valid, so a caller can go on and report every problem at once.
    pub fn load(root: &Path) -> Result<(Project, Vec<Diagnostic>), LoadError> {
        let dir = root.join("profiles");
        let mut diagnostics = Vec::new();
        let policy_path = dir.join("policy.yaml");
        let policy_shown = display_path(root, &policy_path);
        let policy = if policy_path.exists() {
            match parse_yaml::<PolicySpec>(&policy_shown, &read_text(&policy_path)?) {
                Ok(spec) => Policy {
                    legacy_bios: spec.legacy_bios.into_iter().map(|n| n.value).collect(),
                },
                Err(d) => {
                    diagnostics.push(d);
                    Policy::default()
                }
            }
        } else {
            // Without a policy nothing may boot BIOS: the platform's rule is UEFI only.
            Policy::default()
        };

        let mut profiles = BTreeMap::new();
        let mut profile_files = BTreeSet::new();
        for (stem, path) in yaml_files(&dir)? {
            if stem == "policy" {
                continue;
            }
            profile_files.insert(stem.clone());
            let shown = display_path(root, &path);
            let spec = match parse_yaml::<ProfileSpec>(&shown, &read_text(&path)?) {
                Ok(spec) => spec,
                Err(d) => {
                    diagnostics.push(d);
                    continue;
                }
            };
            let before = diagnostics.len();
            check_profile(
                &stem,
                &shown,
                &spec,
                &policy,
                &policy_shown,
                &mut diagnostics,
            );
            if diagnostics.len() == before {
                profiles.insert(stem.clone(), profile_from_spec(spec, &stem, shown));
            }
        }
        if profile_files.is_empty() {
            diagnostics.push(Diagnostic::whole_file(
                &display_path(root, &dir),
                "no profiles found",
                "create one YAML file per profile in profiles/ (see README, \"Profiles\"), or point --root at the project",
            ));
        }
        for name in &policy.legacy_bios {
            if !profile_files.contains(name) {
                diagnostics.push(Diagnostic::whole_file(
                    &policy_shown,
                    format!("legacy_bios names `{name}`, which has no profiles/{name}.yaml"),
                    "remove the name or add the profile",
                ));
            }
        }
        Ok((
            Project {
                root: root.to_path_buf(),
                profiles,
                profile_files,
                policy,
            },
            diagnostics,
        ))
    }

    /// Names of the pipelines under `pipelines/`.
    pub fn pipeline_names(&self) -> Result<Vec<(String, PathBuf)>, LoadError> {
        let dir = self.root.join("pipelines");
        if !dir.exists() {
            return Ok(Vec::new());
        }
        yaml_files(&dir)
    }

    /// Where `target` (a pipeline name or a path to a YAML file) lives.
    pub fn pipeline_path(&self, target: &str) -> Result<PathBuf, LoadError> {
        let looks_like_file =
            target.ends_with(".yaml") || target.ends_with(".yml") || target.contains('/');
        let path = if looks_like_file {
            PathBuf::from(target)
        } else {
            self.root.join("pipelines").join(format!("{target}.yaml"))
        };
        if path.exists() {
            return Ok(path);
        }
        let known = self
            .pipeline_names()
            .unwrap_or_default()
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>();
        Err(LoadError::UnknownPipeline {
            name: target.to_string(),
            path,
            known: if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            },
        })
    }
}

fn check_profile(
    stem: &str,
    file: &Path,
    spec: &ProfileSpec,
    policy: &Policy,
    policy_file: &Path,
    out: &mut Vec<Diagnostic>,
) {
    if let Err(e) = crate::names::check_name(stem) {
        out.push(Diagnostic::whole_file(
            file,
            format!("the profile file name `{stem}` is not a safe profile name: {e}"),
            "rename the file (e.g. `lucy.yaml`, `node-2.yaml`)",
        ));
    }
    if let Some(attribute) = &spec.attribute {
        if let Err(e) = crate::names::check_attribute(attribute) {
            out.push(Diagnostic::whole_file(
                file,
                format!(
                    "attribute `{}` is not a safe flake attribute path: {e}",
                    attribute.escape_debug()
                ),
                "write the attribute path of the image in the flake, e.g. `images.lucy`",
            ));
        }
    }
    if spec.name.value != stem {
        out.push(Diagnostic::at(
            file,
            location_of(&spec.name),
            format!(
                "profile name `{}` differs from its file name `{stem}.yaml`",
                spec.name.value
            ),
            format!(
                "rename the file to `{}.yaml` or set `name: {stem}`",
                spec.name.value
            ),
        ));
    }
    if !policy.allows(stem, spec.boot.value) {
        out.push(Diagnostic::at(
            file,
            location_of(&spec.boot),
            format!(
                "profile `{stem}` asks for legacy BIOS boot, which the firmware policy does not allow: \
                 Hephaestus images boot UEFI; only the profiles listed in {} (legacy_bios) may boot BIOS",
                policy_file.display()
            ),
            "set `boot: uefi` (and build a GPT disk with an EFI System Partition), or add the profile to legacy_bios in the policy if the platform grants the exception",
        ));
    }
    for (key, value) in &spec.properties {
        match reserved_key(key) {
            Some(ReservedKey::Firmware) => out.push(Diagnostic::at(
                file,
                location_of(value),
                format!("property `{key}` would override a firmware key the pipeline derives from `boot`"),
                format!("remove `{key}` from properties; change `boot:` instead (uefi → hw_firmware_type=uefi + hw_machine_type=q35, bios → hw_firmware_type=bios)"),
            )),
            Some(ReservedKey::Computed) => out.push(Diagnostic::at(
                file,
                location_of(value),
                format!(
                    "property `{key}` is computed by the pipeline and cannot be set by a profile"
                ),
                format!("remove `{key}` from properties"),
            )),
            None => {}
        }
    }
    for tag in &spec.tags {
        if reserved_tag(&tag.value) {
            out.push(Diagnostic::at(
                file,
                location_of(tag),
                format!(
                    "tag `{}` is managed by the pipeline's image lifecycle",
                    tag.value
                ),
                "remove it from tags (to pin one image against retention, tag that image `keep` in Glance)",
            ));
        }
    }
    for (loc, problem) in spec
        .image_metadata
        .as_ref()
        .map(ImageMetadataSpec::problems)
        .unwrap_or_default()
    {
        out.push(Diagnostic::at(
            file,
            loc,
            problem,
            "use one of the values SCS-0102 allows (README, \"Glance properties\")",
        ));
    }
    for (what, value) in [("min_disk", spec.min_disk), ("min_ram", spec.min_ram)] {
        if value == Some(0) {
            out.push(Diagnostic::whole_file(
                file,
                format!("{what} is 0"),
                format!("give {what} a positive value or remove it"),
            ));
        }
    }
}

fn profile_from_spec(spec: ProfileSpec, stem: &str, file: PathBuf) -> Profile {
    Profile {
        name: stem.to_string(),
        attribute: spec.attribute.unwrap_or_else(|| format!("images.{stem}")),
        description: spec.description,
        role: spec.role,
        boot: spec.boot.value,
        min_disk: spec.min_disk,
        min_ram: spec.min_ram,
        properties: spec
            .properties
            .into_iter()
            .map(|(k, v)| (k, v.value))
            .collect(),
        tags: spec.tags.into_iter().map(|t| t.value).collect(),
        file,
        metadata: spec
            .image_metadata
            .as_ref()
            .map(ImageMetadataSpec::values)
            .unwrap_or_default(),
    }
}
