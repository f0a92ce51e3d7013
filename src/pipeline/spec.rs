//! The YAML files as written by people: serde types for pipelines, profiles and the policy.
//!
//! These types only describe shape; every rule that spans fields or files lives in
//! `validate`, which turns them into a [`crate::pipeline::Plan`]. Values that a later rule may
//! complain about are wrapped in [`Spanned`] so the complaint can name line and column.
//! Keys are snake_case throughout; unknown keys are errors (`deny_unknown_fields`).

use crate::firmware::Boot;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
pub use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::fmt;

/// One `profiles/<name>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Must equal the file name without `.yaml`.
    pub name: Spanned<String>,
    /// One line for humans, shown by `pipeline list`.
    pub description: String,
    /// What the machine is for (free text, copied into the report and `hephaestus_role`).
    pub role: String,
    /// Firmware the image boots with.
    pub boot: Spanned<Boot>,
    /// Flake attribute of the image; defaults to `images.<name>`.
    #[serde(default)]
    pub attribute: Option<String>,
    /// Glance `min_disk`, in GiB.
    #[serde(default)]
    pub min_disk: Option<u64>,
    /// Glance `min_ram`, in MiB.
    #[serde(default)]
    pub min_ram: Option<u64>,
    /// Extra Glance properties; may add keys, never override computed ones.
    #[serde(default)]
    pub properties: BTreeMap<String, Spanned<String>>,
    /// Extra Glance tags.
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
}

/// `profiles/policy.yaml`: the platform's firmware rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The only profiles allowed to boot legacy BIOS.
    #[serde(default)]
    pub legacy_bios: Vec<Spanned<String>>,
}

/// One `pipelines/<name>.yaml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name, used in reports and `hephaestus_pipeline`.
    pub name: Spanned<String>,
    /// One line for humans, shown by `pipeline list`.
    #[serde(default)]
    pub description: String,
    /// clouds.yaml entry to publish into; `--cloud` overrides it.
    #[serde(default)]
    pub cloud: Option<String>,
    /// `all`, or a list of profile names.
    pub profiles: Spanned<ProfileSelection>,
    /// How many profiles run at once (default 2).
    #[serde(default)]
    pub concurrency: Option<Spanned<usize>>,
    /// Flake holding the images: a directory (relative to the root) or a flake reference;
    /// `--flake` overrides it.
    #[serde(default)]
    pub flake: Option<String>,
    /// The chain every profile goes through, in order.
    pub stages: Spanned<Vec<Spanned<StageEntry>>>,
}

/// Which profiles a pipeline runs.
#[derive(Debug)]
pub enum ProfileSelection {
    /// Every profile in `profiles/`.
    All,
    /// These profiles, in this order.
    List(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for ProfileSelection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SelectionVisitor;
        impl<'de> Visitor<'de> for SelectionVisitor {
            type Value = ProfileSelection;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`all` or a list of profile names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v == "all" {
                    Ok(ProfileSelection::All)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<Spanned<String>>()? {
                    names.push(name);
                }
                Ok(ProfileSelection::List(names))
            }
        }
        deserializer.deserialize_any(SelectionVisitor)
    }
}

/// One item of `stages:`: a bare stage name, or a one-key map `stage: {options}`.
///
/// The name is kept as text so that an unknown stage becomes a validation error with its
/// location (reported with every other error) instead of aborting the parse of the file.
#[derive(Debug)]
pub struct StageEntry {
    /// The stage name as written.
    pub name: String,
    /// Options, when the stage is known and options were given.
    pub options: StageOptions,
}

/// Options of the stages that take any.
#[derive(Debug, Default)]
pub enum StageOptions {
    /// No options given (or the stage takes none).
    #[default]
    None,
    /// `build: {...}`
    Build(BuildOptions),
    /// `upload: {...}`
    Upload(UploadOptions),
    /// `promote: {...}`
    Promote(PromoteOptions),
    /// `boot-check: {...}`
    BootCheck(BootCheckOptions),
    /// Options given to a stage that takes none, or to an unknown stage.
    Unexpected,
}

/// Options of the `build` stage.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildOptions {
    /// Seconds before `nix build` is stopped (default 3600).
    #[serde(default)]
    pub timeout: Option<u64>,
}

/// How the upload stage sends the bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum UploadMethod {
    /// `PUT /v2/images/{id}/file`: the bytes are stored as they arrive, hashed once by Glance.
    #[default]
    Direct,
    /// `PUT /v2/images/{id}/stage` then a `glance-direct` import.
    Import,
    /// `import` when the cloud offers glance-direct (`GET /v2/info/import`), else `direct`.
    Auto,
}

/// Options of the `upload` stage.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadOptions {
    /// Name of the current image; `{profile}` is replaced (default `hephaestus-{profile}`).
    #[serde(default)]
    pub name: Option<String>,
    /// How the bytes are sent (default `direct`).
    #[serde(default)]
    pub method: Option<UploadMethod>,
    /// Seconds to wait for the image to become `active` (default 600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Glance visibility of published images (default `private`).
    #[serde(default)]
    pub visibility: Option<crate::glance::Visibility>,
    /// Attempts at publishing when Glance fails transiently (5xx, 429, connection lost),
    /// each on a fresh candidate because Glance cannot resume an upload (default 3).
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Seconds to keep trying to delete a failed candidate before giving up with exit code 3
    /// (default 120: long enough for a restarted Glance to come back).
    #[serde(default)]
    pub cleanup_timeout: Option<u64>,
    /// Generations of the profile kept after a publish, the current one included (default
    /// 3); current, previous, protected and `keep`-tagged images are never deleted.
    #[serde(default)]
    pub keep: Option<u32>,
}

/// Options of the `boot-check` stage.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootCheckOptions {
    /// Seconds before the boot counts as hung (default 300 under TCG, 60 under KVM).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Regex a serial-console line must match; `{profile}` is replaced (default: a `login:`
    /// prompt or `HEPHAESTUS-BOOT-OK <profile>` at the start of a line).
    #[serde(default)]
    pub marker: Option<String>,
    /// Guest memory in MiB (default 1024).
    #[serde(default)]
    pub memory: Option<u32>,
    /// `tcg`, `kvm` or `auto` (default: KVM only when a probe boot under KVM works).
    #[serde(default)]
    pub accel: Option<crate::boot::Accel>,
}

/// Options of the `promote` stage: copy each profile's current image from cloud `from` into
/// the pipeline's cloud.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromoteOptions {
    /// clouds.yaml entry to copy from (staging).
    pub from: String,
    /// Stable name of the images; `{profile}` is replaced (default `hephaestus-{profile}`).
    #[serde(default)]
    pub name: Option<String>,
    /// Promote this generation instead of the source's current image.
    #[serde(default)]
    pub generation: Option<String>,
    /// Refuse images without this tag (the tag CI sets once an image passed its tests).
    #[serde(default)]
    pub require_tag: Option<String>,
    /// Glance visibility in the target (default `private`).
    #[serde(default)]
    pub visibility: Option<crate::glance::Visibility>,
    /// Seconds to wait for the copy to become `active` (default 600).
    #[serde(default)]
    pub timeout: Option<u64>,
    /// Seconds to keep trying to delete a failed candidate (default 120).
    #[serde(default)]
    pub cleanup_timeout: Option<u64>,
}

impl<'de> Deserialize<'de> for StageEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StageEntryVisitor)
    }
}

struct StageEntryVisitor;

impl<'de> Visitor<'de> for StageEntryVisitor {
    type Value = StageEntry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stage name, or a map with one stage name and its options")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(StageEntry {
            name: v.to_string(),
            options: StageOptions::None,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Some(name) = map.next_key::<String>()? else {
            return Err(de::Error::custom(
                "empty map: write a stage name, e.g. `- verify` or `- upload: {method: direct}`",
            ));
        };
        let options = match name.as_str() {
            "build" => StageOptions::Build(
                map.next_value::<Option<BuildOptions>>()?
                    .unwrap_or_default(),
            ),
            "promote" => {
                StageOptions::Promote(map.next_value::<Option<PromoteOptions>>()?.ok_or_else(
                    || de::Error::custom("`promote` needs options: `- promote: {from: CLOUD}`"),
                )?)
            }
            "boot-check" => StageOptions::BootCheck(
                map.next_value::<Option<BootCheckOptions>>()?
                    .unwrap_or_default(),
            ),
            "upload" => StageOptions::Upload(
                map.next_value::<Option<UploadOptions>>()?
                    .unwrap_or_default(),
            ),
            _ => match map.next_value::<Option<IgnoredAny>>()? {
                Some(_) => StageOptions::Unexpected,
                None => StageOptions::None,
            },
        };
        if let Some(extra) = map.next_key::<String>()? {
            return Err(de::Error::custom(format!(
                "a stage item names one stage, found a second key `{extra}`: write each stage as its own `- ` item"
            )));
        }
        Ok(StageEntry { name, options })
    }
}

/// The first `Spanned` location that is known: serde-saphyr reports `referenced` for the use
/// site and `defined` for anchors; either names the line a person should look at.
pub fn location_of<T>(spanned: &Spanned<T>) -> Location {
    if spanned.referenced != Location::UNKNOWN {
        spanned.referenced
    } else {
        spanned.defined
    }
}
