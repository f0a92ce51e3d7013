//! Loading and validation: YAML files on disk → a [`Project`] and a checked [`Plan`].
//!
//! Nothing here has side effects beyond reading files, so `validate`, `plan` and the first
//! step of `run` share it. Every problem becomes a [`Diagnostic`] naming file, line, column,
//! what is wrong and how to fix it; validation goes on after a problem so that one run reports
//! all of them, not only the first (a YAML syntax error still ends the reading of its file).

use super::spec::{
    location_of, Location, PipelineSpec, PolicySpec, ProfileSelection, ProfileSpec, Spanned,
    StageEntry, StageOptions,
};
use super::Plan;
use crate::firmware::Boot;
use crate::stage::{Slot, Stage};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Default number of profiles a pipeline runs at once.
pub const DEFAULT_CONCURRENCY: usize = 2;

/// One problem in one file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file, as the user named it or relative to the root.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The offending lines, as the YAML parser rendered them.
    #[serde(skip)]
    pub snippet: Option<String>,
}

impl Diagnostic {
    fn at(file: &Path, loc: Location, message: impl Into<String>, hint: impl Into<String>) -> Self {
        let hint = hint.into();
        Diagnostic {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
            snippet: None,
        }
    }

    fn whole_file(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Diagnostic::at(file, Location::UNKNOWN, message, hint)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(snippet) = &self.snippet {
            for line in snippet.lines() {
                write!(f, "\n    {line}")?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    fix: {hint}")?;
        }
        Ok(())
    }
}

/// Why a project or pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// One or more files are invalid; every problem found is listed.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// A named pipeline has no file.
    #[error("no pipeline `{name}`: {path} does not exist (known pipelines: {known})")]
    UnknownPipeline {
        /// What the user asked for.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The pipelines that do exist.
        known: String,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let mut out = match diagnostics.len() {
        1 => "1 problem found:".to_string(),
        n => format!("{n} problems found:"),
    };
    for d in diagnostics {
        out.push_str("\n  ");
        out.push_str(&d.to_string().replace('\n', "\n  "));
    }
    out
}

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
}

/// The platform policy after validation.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Profiles allowed to boot legacy BIOS.
    pub legacy_bios: BTreeSet<String>,
}

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

/// Glance property keys the pipeline computes; a profile may not set them.
pub const FIRMWARE_KEYS: &[&str] = &["hw_firmware_type", "hw_machine_type"];

/// Properties the tag stage computes besides firmware; a profile may not set them either.
pub const COMPUTED_KEYS: &[&str] = &[
    "os_type",
    "os_distro",
    "os_version",
    "architecture",
    "hephaestus_profile",
    "hephaestus_role",
    "hephaestus_generation",
    "hephaestus_store_path",
    "hephaestus_pipeline",
    "owner_specified.openstack.sha256",
    "owner_specified.openstack.md5",
    "owner_specified.openstack.object",
];

/// Tags the lifecycle owns; a profile may not add them.
pub const LIFECYCLE_TAGS: &[&str] = &[
    "hephaestus",
    "candidate",
    "current",
    "previous",
    "rolled-back",
];

/// Parse one YAML file; a syntax or type error becomes a diagnostic with the parser's snippet.
fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str::<T>(text).map_err(|err| {
        let loc = err.location().unwrap_or(Location::UNKNOWN);
        let name = file.display().to_string();
        let rendered =
            err.render_with_options(serde_saphyr::render_options! { source_name: Some(&name) });
        let (message, snippet) = split_rendered(&rendered);
        let hint = yaml_hint(&message);
        Diagnostic {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
            hint,
            snippet,
        }
    })
}

/// serde-saphyr renders `message` followed by a snippet block; keep the message as the
/// diagnostic's text (without its own location suffix, which we print in front) and the rest
/// as the snippet.
fn split_rendered(rendered: &str) -> (String, Option<String>) {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let message = strip_location_suffix(first.trim_start_matches("error: ").trim());
    let rest: Vec<&str> = lines.collect();
    let snippet = (!rest.is_empty()).then(|| rest.join("\n"));
    (message, snippet)
}

fn strip_location_suffix(message: &str) -> String {
    // "line 3 column 7: ..." or "... at line 3, column 7": we print the location ourselves,
    // in file:line:column form, so the parser's own copy would only repeat it.
    let mut message = message;
    if message.starts_with("line ") {
        if let Some(i) = message.find(": ") {
            message = &message[i + 2..];
        }
    }
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn yaml_hint(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let hint = if m.contains("unknown field") {
        "remove the key or correct its spelling; the expected keys are listed above"
    } else if m.contains("missing field") {
        "add the missing key"
    } else if m.starts_with("invalid") || m.contains("invalid type") || m.contains("invalid value")
    {
        "give the value the type the message names (a number, a string, a list or a map)"
    } else if m.contains("duplicate mapping key") {
        "remove one of the two keys"
    } else if m.contains("unknown variant") {
        "use one of the values listed in the message"
    } else {
        "fix the YAML syntax at this position (indentation, a missing `:` or an unclosed bracket)"
    };
    Some(hint.to_string())
}

fn read_text(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
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
fn display_path(root: &Path, path: &Path) -> PathBuf {
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
    if spec.boot.value == Boot::Bios && !policy.legacy_bios.contains(stem) {
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
        if FIRMWARE_KEYS.contains(&key.as_str()) {
            out.push(Diagnostic::at(
                file,
                location_of(value),
                format!("property `{key}` would override a firmware key the pipeline derives from `boot`"),
                format!("remove `{key}` from properties; change `boot:` instead (uefi → hw_firmware_type=uefi + hw_machine_type=q35, bios → hw_firmware_type=bios)"),
            ));
        } else if COMPUTED_KEYS.contains(&key.as_str()) {
            out.push(Diagnostic::at(
                file,
                location_of(value),
                format!(
                    "property `{key}` is computed by the pipeline and cannot be set by a profile"
                ),
                format!("remove `{key}` from properties"),
            ));
        }
    }
    for tag in &spec.tags {
        if LIFECYCLE_TAGS.contains(&tag.value.as_str()) || tag.value.starts_with("profile:") {
            out.push(Diagnostic::at(
                file,
                location_of(tag),
                format!(
                    "tag `{}` is managed by the pipeline's image lifecycle",
                    tag.value
                ),
                "remove it from tags",
            ));
        }
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
    }
}

/// Values from the command line that override a pipeline file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--cloud`
    pub cloud: Option<String>,
    /// `--flake`
    pub flake: Option<String>,
    /// `--profile`, repeatable: run only these.
    pub profiles: Vec<String>,
}

/// Read and check one pipeline file against the project. Returns the plan, or every problem
/// found in the pipeline (the project's own problems are the caller's to report).
pub fn load_pipeline(
    project: &Project,
    path: &Path,
    overrides: &Overrides,
) -> Result<Plan, LoadError> {
    let shown = display_path(&project.root, path);
    let spec = parse_yaml::<PipelineSpec>(&shown, &read_text(path)?)
        .map_err(|d| LoadError::Invalid(vec![d]))?;
    let mut diagnostics = Vec::new();
    let plan = check_pipeline(project, &shown, spec, overrides, &mut diagnostics);
    match plan {
        Some(plan) if diagnostics.is_empty() => Ok(plan),
        _ => Err(LoadError::Invalid(diagnostics)),
    }
}

fn check_pipeline(
    project: &Project,
    file: &Path,
    spec: PipelineSpec,
    overrides: &Overrides,
    out: &mut Vec<Diagnostic>,
) -> Option<Plan> {
    if let Some(stem) = file.file_stem().and_then(|s| s.to_str()) {
        let in_pipelines_dir = file.parent().is_some_and(|p| p.ends_with("pipelines"));
        if in_pipelines_dir && spec.name.value != stem {
            out.push(Diagnostic::at(
                file,
                location_of(&spec.name),
                format!(
                    "pipeline name `{}` differs from its file name `{stem}.yaml`",
                    spec.name.value
                ),
                format!("set `name: {stem}` so that `pipeline run {stem}` and the reports agree"),
            ));
        }
    }

    // Profiles: which ones, each known, none twice.
    let mut selected: Vec<String> = Vec::new();
    match &spec.profiles.value {
        ProfileSelection::All => selected.extend(project.profiles.keys().cloned()),
        ProfileSelection::List(names) => {
            if names.is_empty() {
                out.push(Diagnostic::at(
                    file,
                    location_of(&spec.profiles),
                    "the profile list is empty",
                    "name at least one profile, or write `profiles: all`",
                ));
            }
            let mut seen = BTreeSet::new();
            for name in names {
                if !seen.insert(name.value.clone()) {
                    out.push(Diagnostic::at(
                        file,
                        location_of(name),
                        format!("profile `{}` is listed twice", name.value),
                        "remove the duplicate",
                    ));
                } else if !project.profile_files.contains(&name.value) {
                    out.push(Diagnostic::at(
                        file,
                        location_of(name),
                        format!("unknown profile `{}`", name.value),
                        format!("use one of: {}", known_list(project.profile_files.iter())),
                    ));
                } else if project.profiles.contains_key(&name.value) {
                    selected.push(name.value.clone());
                }
            }
        }
    }
    for wanted in &overrides.profiles {
        if !selected.contains(wanted) && !project.profile_files.contains(wanted) {
            out.push(Diagnostic::whole_file(
                file,
                format!("--profile {wanted}: no such profile"),
                format!("use one of: {}", known_list(selected.iter())),
            ));
        } else if !selected.contains(wanted) && project.profiles.contains_key(wanted) {
            out.push(Diagnostic::whole_file(
                file,
                format!("--profile {wanted}: this pipeline does not run that profile"),
                format!("use one of: {}", known_list(selected.iter())),
            ));
        }
    }
    if !overrides.profiles.is_empty() {
        selected.retain(|p| overrides.profiles.contains(p));
    }

    // Stages: known, not empty, not twice, each after what it needs.
    let stages = check_stages(file, &spec.stages, out);

    let concurrency = match &spec.concurrency {
        Some(c) if c.value == 0 => {
            out.push(Diagnostic::at(
                file,
                location_of(c),
                "concurrency is 0: no profile would ever run",
                "set concurrency to 1 or more",
            ));
            1
        }
        Some(c) => c.value,
        None => DEFAULT_CONCURRENCY,
    };

    Some(Plan {
        pipeline: spec.name.value,
        description: spec.description,
        file: file.to_path_buf(),
        cloud: overrides.cloud.clone().or(spec.cloud),
        flake: overrides.flake.clone().or(spec.flake),
        concurrency,
        stages,
        profiles: selected
            .iter()
            .filter_map(|name| project.profiles.get(name).cloned())
            .collect(),
    })
}

fn known_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

fn check_stages(
    file: &Path,
    stages: &Spanned<Vec<Spanned<StageEntry>>>,
    out: &mut Vec<Diagnostic>,
) -> Vec<Stage> {
    if stages.value.is_empty() {
        out.push(Diagnostic::at(
            file,
            location_of(stages),
            "the stage list is empty: the pipeline would do nothing",
            format!("list the stages to run, e.g. [{}]", Stage::NAMES.join(", ")),
        ));
        return Vec::new();
    }
    let mut provided: BTreeSet<Slot> = BTreeSet::from([Slot::Profile]);
    let mut seen = BTreeSet::new();
    let mut result = Vec::new();
    for entry in &stages.value {
        let loc = location_of(entry);
        let name = entry.value.name.as_str();
        if name == "promote" && !matches!(entry.value.options, StageOptions::Promote(_)) {
            out.push(Diagnostic::at(
                file,
                loc,
                "stage `promote` needs the cloud to copy from",
                "write it as `- promote: {from: staging}`",
            ));
            continue;
        }
        let Some(stage) = Stage::from_entry(&entry.value) else {
            out.push(Diagnostic::at(
                file,
                loc,
                format!("unknown stage `{name}`"),
                format!("use one of: {}", Stage::NAMES.join(", ")),
            ));
            continue;
        };
        if matches!(entry.value.options, StageOptions::Unexpected) {
            out.push(Diagnostic::at(
                file,
                loc,
                format!("stage `{name}` takes no options"),
                format!("write it as `- {name}`"),
            ));
        }
        let visibility = match &stage {
            Stage::Upload(o) => o.visibility,
            Stage::Promote(o) => o.visibility,
            _ => None,
        };
        if visibility == Some(crate::glance::Visibility::Unknown) {
            out.push(Diagnostic::at(
                file,
                loc,
                format!("stage `{name}` has an unknown visibility"),
                "use one of: private, shared, community, public",
            ));
        }
        if let Stage::BootCheck(o) = &stage {
            if let Some(marker) = &o.marker {
                if let Err(e) = crate::boot::parse_marker(&marker.replace("{profile}", "p")) {
                    out.push(Diagnostic::at(
                        file,
                        loc,
                        format!("boot-check marker is not a valid regex: {e}"),
                        "fix the regular expression (e.g. `marker: \"^\\\\S+ login:\"`)",
                    ));
                }
            }
        }
        if !seen.insert(stage.name()) {
            out.push(Diagnostic::at(
                file,
                loc,
                format!("stage `{name}` is listed twice"),
                "remove the second one",
            ));
            continue;
        }
        for need in stage.needs() {
            if !provided.contains(need) {
                let by = Stage::provider_of(*need).unwrap_or("?");
                out.push(Diagnostic::at(
                    file,
                    loc,
                    format!(
                        "`{name}` needs `{by}` before it (it uses the {need} that `{by}` provides)"
                    ),
                    format!("add `- {by}` above `- {name}`"),
                ));
            }
        }
        provided.insert(stage.provides());
        result.push(stage);
    }
    result
}

/// Everything `pipeline validate` checks: the project, then each named pipeline (or every
/// pipeline when none is named). Returns all problems; empty means valid.
pub fn validate_all(
    root: &Path,
    targets: &[String],
) -> Result<(usize, Vec<Diagnostic>), LoadError> {
    let (project, mut diagnostics) = Project::load(root)?;
    let paths: Vec<PathBuf> = if targets.is_empty() {
        project
            .pipeline_names()?
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    } else {
        let mut paths = Vec::new();
        for t in targets {
            paths.push(project.pipeline_path(t)?);
        }
        paths
    };
    for path in &paths {
        match load_pipeline(&project, path, &Overrides::default()) {
            Ok(_) => {}
            Err(LoadError::Invalid(mut ds)) => diagnostics.append(&mut ds),
            Err(other) => return Err(other),
        }
    }
    Ok((paths.len(), diagnostics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        for (path, text) in files {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }
        dir
    }

    const LUCY: &str = "name: lucy\ndescription: d\nrole: r\nboot: uefi\n";
    const SUNRAKU: &str = "name: sunraku\ndescription: d\nrole: r\nboot: bios\n";
    const POLICY: &str = "legacy_bios: [sunraku]\n";

    fn plan_of(pipeline: &str) -> Result<Plan, LoadError> {
        let dir = project_with(&[
            ("profiles/lucy.yaml", LUCY),
            ("profiles/sunraku.yaml", SUNRAKU),
            ("profiles/policy.yaml", POLICY),
            ("pipelines/p.yaml", pipeline),
        ]);
        let (project, diagnostics) = Project::load(dir.path()).expect("load");
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        load_pipeline(
            &project,
            &dir.path().join("pipelines/p.yaml"),
            &Overrides::default(),
        )
    }

    fn problems(result: Result<Plan, LoadError>) -> Vec<Diagnostic> {
        match result {
            Err(LoadError::Invalid(ds)) => ds,
            other => panic!("expected diagnostics, got {other:?}"),
        }
    }

    #[test]
    fn stage_items_are_names_or_one_key_maps() {
        let plan = plan_of(
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - build: {timeout: 5}\n  - tag\n  - verify\n  - upload:\n      name: img-{profile}\n      method: direct\n",
        )
        .expect("valid");
        let names: Vec<&str> = plan.stages.iter().map(Stage::name).collect();
        assert_eq!(names, ["evaluate", "build", "tag", "verify", "upload"]);
        assert!(matches!(&plan.stages[1], Stage::Build(o) if o.timeout == Some(5)));
        assert_eq!(plan.image_name("lucy"), "img-lucy");
        assert_eq!(plan.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(plan.profiles.len(), 2);
    }

    #[test]
    fn a_stage_before_its_provider_is_refused_at_its_line() {
        let ds = problems(plan_of(
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - verify\n  - build\n",
        ));
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!((ds[0].line, ds[0].column), (5, 5));
        assert!(ds[0].message.contains("`verify` needs `build` before it"));
        assert_eq!(
            ds[0].hint.as_deref(),
            Some("add `- build` above `- verify`")
        );
    }

    #[test]
    fn profile_lists_keep_their_order_and_filters_apply() {
        let plan =
            plan_of("name: p\nprofiles: [sunraku, lucy]\nstages: [evaluate]\n").expect("valid");
        let names: Vec<&str> = plan.profiles.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["sunraku", "lucy"]);
    }

    #[test]
    fn bios_needs_the_policy() {
        let dir = project_with(&[
            ("profiles/sunraku.yaml", SUNRAKU),
            ("profiles/lucy.yaml", LUCY),
        ]);
        let (project, ds) = Project::load(dir.path()).expect("load");
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert!(ds[0]
            .message
            .contains("profile `sunraku` asks for legacy BIOS"));
        assert_eq!(ds[0].line, 4);
        assert!(!project.profiles.contains_key("sunraku"));
        assert!(project.profiles.contains_key("lucy"));
    }

    #[test]
    fn policy_naming_a_missing_profile_is_reported() {
        let dir = project_with(&[
            ("profiles/lucy.yaml", LUCY),
            ("profiles/policy.yaml", POLICY),
        ]);
        let (_, ds) = Project::load(dir.path()).expect("load");
        assert!(
            ds.iter()
                .any(|d| d.message.contains("legacy_bios names `sunraku`")),
            "{ds:?}"
        );
    }

    #[test]
    fn yaml_errors_carry_line_column_and_snippet() {
        let ds = problems(plan_of("name: p\nprofiles: all\nstages: [evaluate\n"));
        assert_eq!(ds.len(), 1);
        assert!(ds[0].line >= 3, "{:?}", ds[0]);
        assert!(ds[0].snippet.is_some());
        assert!(ds[0].to_string().starts_with("pipelines/p.yaml:"));
    }

    #[test]
    fn overrides_replace_cloud_and_flake() {
        let dir = project_with(&[
            ("profiles/lucy.yaml", LUCY),
            (
                "pipelines/p.yaml",
                "name: p\ncloud: staging\nflake: nix\nprofiles: all\nstages: [evaluate]\n",
            ),
        ]);
        let (project, _) = Project::load(dir.path()).expect("load");
        let o = Overrides {
            cloud: Some("production".into()),
            flake: Some("path:/elsewhere".into()),
            profiles: vec![],
        };
        let plan =
            load_pipeline(&project, &dir.path().join("pipelines/p.yaml"), &o).expect("valid");
        assert_eq!(plan.cloud.as_deref(), Some("production"));
        assert_eq!(plan.flake.as_deref(), Some("path:/elsewhere"));
    }
}
