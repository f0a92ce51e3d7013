//! The YAML files as written by people: serde types for pipelines, profiles and the policy.
//!
//! These types only describe shape; every rule that spans fields or files lives in
//! `project` and `validate`, which turn them into a [`crate::pipeline::Plan`]. Each stage's
//! options type lives with its stage. Values that a later rule may
//! complain about are wrapped in [`Spanned`] so the complaint can name line and column.
//! Keys are snake_case throughout; unknown keys are errors (`deny_unknown_fields`).
//!
//! The same types give the JSON Schema of the files (`schema`): their doc comments are what an
//! editor shows on hover, so they are written for the person editing the YAML.

use crate::firmware::Boot;
use crate::stage::{boot_check, build, promote, upload, Kind};
use schemars::JsonSchema;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
pub use serde_saphyr::{Location, Spanned};
use std::collections::BTreeMap;
use std::fmt;

/// One `profiles/<name>.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSpec {
    /// Must equal the file name without `.yaml`: a lower-case letter, then up to 62 lower-case
    /// letters, digits or `-`.
    #[schemars(with = "String", pattern(crate::names::NAME_PATTERN))]
    pub name: Spanned<String>,
    /// One line for humans, shown by `pipeline list`.
    pub description: String,
    /// What the machine is for (free text, copied into the report and `hephaestus_role`).
    pub role: String,
    /// Firmware the image boots with; `bios` only for profiles that `policy.yaml` lists.
    #[schemars(with = "Boot")]
    pub boot: Spanned<Boot>,
    /// Flake attribute of the image; defaults to `images.<name>`.
    #[serde(default)]
    #[schemars(pattern(crate::names::ATTRIBUTE_PATTERN))]
    pub attribute: Option<String>,
    /// Glance `min_disk`, in GiB.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub min_disk: Option<u64>,
    /// Glance `min_ram`, in MiB (default 1024).
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub min_ram: Option<u64>,
    /// Extra Glance properties; may add keys, never override computed ones.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub properties: BTreeMap<String, Spanned<String>>,
    /// Extra Glance tags; not the lifecycle's own (`current`, `keep`, `profile:*`, …).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tags: Vec<Spanned<String>>,
    /// SCS image metadata over the pipeline's defaults.
    #[serde(default)]
    pub image_metadata: Option<ImageMetadataSpec>,
}

/// `image_metadata:` of a pipeline (defaults) or a profile (overrides): the SCS-0102
/// properties a person decides (the rest is computed).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageMetadataSpec {
    /// `generic`, `minimal`, `capinode`, `gpu`, `network`, `appliance` or `custom`.
    #[serde(default)]
    #[schemars(schema_with = "os_purpose_schema")]
    pub os_purpose: Option<Spanned<String>>,
    /// `yearly` … `daily`, `critical_bug` or `never`.
    #[serde(default)]
    #[schemars(schema_with = "replace_frequency_schema")]
    pub replace_frequency: Option<Spanned<String>>,
    /// `YYYY-MM-DD`, `none` or `notice`.
    #[serde(default)]
    #[schemars(
        with = "Option<String>",
        pattern(r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|none|notice)$")
    )]
    pub provided_until: Option<Spanned<String>>,
    /// Hours to a new image after a critical fix is available.
    #[serde(default)]
    pub hotfix_hours: Option<u32>,
    /// An http(s) URL of the image's source, or `private`.
    #[serde(default)]
    #[schemars(with = "Option<String>", pattern(r"^(https?://\S+|private)$"))]
    pub image_source: Option<Spanned<String>>,
    /// The default login user, or `none`.
    #[serde(default)]
    #[schemars(with = "Option<String>", pattern("^[a-z0-9_-]{1,32}$"))]
    pub image_original_user: Option<Spanned<String>>,
    /// An operating-system-specific patch level.
    #[serde(default)]
    pub patchlevel: Option<String>,
    /// The image runs the QEMU guest agent.
    #[serde(default)]
    pub guest_agent: Option<bool>,
}

impl ImageMetadataSpec {
    /// The values, without their locations.
    pub fn values(&self) -> crate::scs::Metadata {
        let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.value.clone());
        crate::scs::Metadata {
            os_purpose: text(&self.os_purpose),
            replace_frequency: text(&self.replace_frequency),
            provided_until: text(&self.provided_until),
            hotfix_hours: self.hotfix_hours,
            image_source: text(&self.image_source),
            image_original_user: text(&self.image_original_user),
            patchlevel: self.patchlevel.clone(),
            guest_agent: self.guest_agent,
        }
    }

    /// Every value the standard does not allow: its location and why.
    pub fn problems(&self) -> Vec<(Location, String)> {
        let mut out = Vec::new();
        let mut check = |v: &Option<Spanned<String>>, f: fn(&str) -> Result<(), String>| {
            if let Some(v) = v {
                if let Err(e) = f(&v.value) {
                    out.push((location_of(v), e));
                }
            }
        };
        check(&self.os_purpose, crate::scs::check_os_purpose);
        check(&self.replace_frequency, crate::scs::check_replace_frequency);
        check(&self.provided_until, crate::scs::check_provided_until);
        check(&self.image_source, crate::scs::check_image_source);
        check(&self.image_original_user, crate::scs::check_original_user);
        out
    }
}

/// `profiles/policy.yaml`: the platform's firmware rule.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// The only profiles allowed to boot legacy BIOS.
    #[serde(default)]
    #[schemars(with = "Vec<String>", inner(pattern(crate::names::NAME_PATTERN)))]
    pub legacy_bios: Vec<Spanned<String>>,
}

/// One `pipelines/<name>.yaml`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// The pipeline's name, used in reports and `hephaestus_pipeline`; must equal the file
    /// name without `.yaml`.
    #[schemars(with = "String", pattern(crate::names::NAME_PATTERN))]
    pub name: Spanned<String>,
    /// One line for humans, shown by `pipeline list`.
    #[serde(default)]
    pub description: String,
    /// clouds.yaml entry to publish into; `--cloud` overrides it.
    #[serde(default)]
    pub cloud: Option<String>,
    /// Several clouds.yaml entries to publish into at once, instead of `cloud`: each built
    /// image is read once and sent to all of them; `--cloud` (repeatable) overrides it.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>", length(min = 1))]
    pub clouds: Option<Spanned<Vec<String>>>,
    /// `all`, or a list of profile names.
    #[schemars(with = "ProfileSelection")]
    pub profiles: Spanned<ProfileSelection>,
    /// How many profiles run at once (default 2).
    #[serde(default)]
    #[schemars(with = "Option<usize>", range(min = 1))]
    pub concurrency: Option<Spanned<usize>>,
    /// Flake holding the images: a directory (relative to the root) or a flake reference;
    /// `--flake` overrides it.
    #[serde(default)]
    pub flake: Option<String>,
    /// The chain every profile goes through, in order; each stage after the stages it needs.
    #[schemars(with = "Vec<StageEntry>", length(min = 1))]
    pub stages: Spanned<Vec<Spanned<StageEntry>>>,
    /// SCS image-metadata defaults of this pipeline's images; profiles may override them.
    #[serde(default)]
    pub image_metadata: Option<ImageMetadataSpec>,
    /// Nix's `--builders` for the images: the machines Nix sends builds to, e.g.
    /// `ssh-ng://builder x86_64-linux /etc/nix/builder-key 8`, several separated by `;`, or
    /// `@/etc/nix/machines` (a machines file, such as Hydra's). The build stage may override it.
    #[serde(default)]
    pub builders: Option<String>,
    /// Nix's `--store`: the store that builds and holds the images. It must be on this machine
    /// (`daemon`, `local`, or a chroot store such as `/srv/hephaestus-store`), because the
    /// images are verified, booted and uploaded from here.
    #[serde(default)]
    pub store: Option<String>,
    /// Nix's `--eval-store`: where evaluation writes derivations.
    #[serde(default)]
    pub eval_store: Option<String>,
    /// Nix's `--max-jobs`: builds at once on this machine, `auto`, or 0 to build only on the
    /// `builders`.
    #[serde(default)]
    pub max_jobs: Option<crate::nix::MaxJobs>,
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

impl JsonSchema for ProfileSelection {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ProfileSelection".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "`all`, or a list of profile names (files in profiles/), in order.",
            "oneOf": [
                {"const": "all", "description": "Every profile in profiles/."},
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": crate::names::NAME_PATTERN},
                    "uniqueItems": true,
                    "description": "These profiles, in this order, each once."
                }
            ]
        })
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
    Build(build::Options),
    /// `upload: {...}`
    Upload(upload::Options),
    /// `promote: {...}`
    Promote(promote::Options),
    /// `boot-check: {...}`
    BootCheck(boot_check::Options),
    /// Options given to a stage that takes none, or to an unknown stage.
    Unexpected,
}

impl<'de> Deserialize<'de> for StageEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StageEntryVisitor)
    }
}

/// What a stage item may carry after its name, as [`StageEntryVisitor`] reads it.
enum OptionsShape {
    /// `- tag`, or `- tag:` with nothing after the colon.
    None,
    /// `- build`, `- build:` or `- build: {…}`: every option has a default.
    Optional(schemars::Schema),
    /// `- promote: {…}` only: `from` has no default.
    Required(schemars::Schema),
}

fn options_shape(kind: Kind, generator: &mut schemars::SchemaGenerator) -> OptionsShape {
    match kind {
        Kind::Build => OptionsShape::Optional(generator.subschema_for::<build::Options>()),
        Kind::BootCheck => OptionsShape::Optional(generator.subschema_for::<boot_check::Options>()),
        Kind::Upload => OptionsShape::Optional(generator.subschema_for::<upload::Options>()),
        Kind::Promote => OptionsShape::Required(generator.subschema_for::<promote::Options>()),
        Kind::Evaluate | Kind::SkipUnchanged | Kind::Tag | Kind::Verify => OptionsShape::None,
    }
}

/// Each stage name with its description, from the doc comments of [`Kind`].
fn stage_descriptions(generator: &mut schemars::SchemaGenerator) -> BTreeMap<String, String> {
    let kinds = Kind::json_schema(generator);
    kinds
        .get("oneOf")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|variant| {
            let name = variant.get("const")?.as_str()?;
            let description = variant.get("description")?.as_str()?;
            Some((name.to_string(), description.to_string()))
        })
        .collect()
}

impl JsonSchema for StageEntry {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StageEntry".into()
    }

    // Mirrors `StageEntryVisitor` plus the checks of `validate` that need no other file:
    // a known name, options only where the stage takes them, `promote` only with options.
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let descriptions = stage_descriptions(generator);
        let mut bare = Vec::new();
        let mut keyed = serde_json::Map::new();
        for kind in Kind::ALL {
            let name = kind.name();
            let description = descriptions.get(name).cloned().unwrap_or_default();
            let (value, may_stand_bare) = match options_shape(kind, generator) {
                OptionsShape::None => (serde_json::json!({"type": "null"}), true),
                OptionsShape::Optional(options) => (
                    serde_json::json!({"anyOf": [options, {"type": "null"}]}),
                    true,
                ),
                OptionsShape::Required(options) => (serde_json::json!({"allOf": [options]}), false),
            };
            let mut value = value;
            value["description"] = description.clone().into();
            if may_stand_bare {
                bare.push(serde_json::json!({"const": name, "description": description}));
            }
            keyed.insert(name.to_string(), value);
        }
        schemars::json_schema!({
            "description": "A stage name (`- verify`), or one stage name with its options (`- upload: {keep: 5}`).",
            "oneOf": [
                {"type": "string", "oneOf": bare},
                {
                    "type": "object",
                    "properties": keyed,
                    "additionalProperties": false,
                    "minProperties": 1,
                    "maxProperties": 1
                }
            ]
        })
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
                map.next_value::<Option<build::Options>>()?
                    .unwrap_or_default(),
            ),
            "promote" => {
                StageOptions::Promote(map.next_value::<Option<promote::Options>>()?.ok_or_else(
                    || de::Error::custom("`promote` needs options: `- promote: {from: CLOUD}`"),
                )?)
            }
            "boot-check" => StageOptions::BootCheck(
                map.next_value::<Option<boot_check::Options>>()?
                    .unwrap_or_default(),
            ),
            "upload" => StageOptions::Upload(
                map.next_value::<Option<upload::Options>>()?
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

fn one_of_schema(allowed: &[&str]) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{"type": "string", "enum": allowed}, {"type": "null"}]
    })
}

fn os_purpose_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    one_of_schema(crate::scs::OS_PURPOSES)
}

fn replace_frequency_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    one_of_schema(crate::scs::REPLACE_FREQUENCIES)
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
