//! Checking a pipeline file against the project into a [`Plan`]: the profiles it selects,
//! its stages in an order where each runs after what it needs, and its options.
//!
//! Nothing here has side effects beyond reading files, so `validate`, `plan` and the first
//! step of `run` share it. Every problem becomes a [`Diagnostic`] naming file, line, column,
//! what is wrong and how to fix it; validation goes on after a problem so that one run reports
//! all of them, not only the first (a YAML syntax error still ends the reading of its file).

use super::diagnostic::{parse_yaml, Diagnostic, LoadError};
use super::project::{display_path, read_text, Project};
use super::spec::{location_of, PipelineSpec, ProfileSelection, Spanned, StageEntry, StageOptions};
use super::Plan;
use crate::boot::Metadata;
use crate::stage::{Kind, Slot, Stage};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Default number of profiles a pipeline runs at once.
pub const DEFAULT_CONCURRENCY: usize = 2;

/// Values from the command line that override a pipeline file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--cloud`, repeatable: publish into these clouds instead of the pipeline's.
    pub clouds: Vec<String>,
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
    if let Err(e) = crate::names::check_name(&spec.name.value) {
        out.push(Diagnostic::at(
            file,
            location_of(&spec.name),
            format!(
                "pipeline name `{}` is not safe: {e}",
                spec.name.value.escape_debug()
            ),
            "use a name like `publish-all` or `nightly`",
        ));
    }
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
    let clouds = check_clouds(file, &spec, overrides, &stages, out);

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

    let defaults = match &spec.image_metadata {
        Some(m) => {
            for (loc, problem) in m.problems() {
                out.push(Diagnostic::at(
                    file,
                    loc,
                    problem,
                    "use one of the values SCS-0102 allows (README, \"Glance properties\")",
                ));
            }
            m.values()
        }
        None => crate::scs::Metadata::default(),
    };

    let nix = crate::nix::Settings {
        builders: spec.builders.clone(),
        store: spec.store.clone(),
        eval_store: spec.eval_store.clone(),
        max_jobs: spec.max_jobs,
    };
    let stage_nix = stages.iter().find_map(|s| match s {
        Stage::Build(o) => Some(o.nix_settings()),
        _ => None,
    });
    for store in [&nix.store, &nix.eval_store]
        .into_iter()
        .chain(stage_nix.iter().flat_map(|s| [&s.store, &s.eval_store]))
        .flatten()
    {
        if let Err(problem) = crate::nix::check_store(store) {
            out.push(Diagnostic::whole_file(
                file,
                problem,
                "to build on other machines, list them in `builders` (the images come back \
                 here); `store` and `eval_store` name a store on this machine",
            ));
        }
    }

    Some(Plan {
        nix,
        pipeline: spec.name.value,
        description: spec.description,
        file: file.to_path_buf(),
        clouds,
        flake: overrides.flake.clone().or(spec.flake),
        concurrency,
        stages,
        profiles: selected
            .iter()
            .filter_map(|name| project.profiles.get(name).cloned())
            .map(|mut p| {
                // The profile's own values over the pipeline's defaults.
                p.metadata = p.metadata.over(&defaults);
                p
            })
            .collect(),
    })
}

/// The clouds the run publishes into: `--cloud` (repeatable), else `clouds:`, else `cloud:`.
fn check_clouds(
    file: &Path,
    spec: &PipelineSpec,
    overrides: &Overrides,
    stages: &[Stage],
    out: &mut Vec<Diagnostic>,
) -> Vec<String> {
    if let (Some(_), Some(list)) = (&spec.cloud, &spec.clouds) {
        out.push(Diagnostic::at(
            file,
            location_of(list),
            "both `cloud` and `clouds` are set",
            "keep one: `cloud: NAME` for one cloud, `clouds: [A, B]` for several",
        ));
    }
    if let Some(list) = spec.clouds.as_ref().filter(|l| l.value.is_empty()) {
        out.push(Diagnostic::at(
            file,
            location_of(list),
            "the cloud list is empty",
            "name at least one clouds.yaml entry, or remove `clouds`",
        ));
    }
    let (clouds, from_command_line) = if !overrides.clouds.is_empty() {
        (overrides.clouds.clone(), true)
    } else if let Some(list) = &spec.clouds {
        (list.value.clone(), false)
    } else {
        (spec.cloud.iter().cloned().collect(), false)
    };
    let mut seen = BTreeSet::new();
    for cloud in &clouds {
        if !seen.insert(cloud) {
            let message = format!("cloud `{cloud}` is named twice");
            let hint = "name each cloud once: the image is sent to every cloud from one read";
            match (&spec.clouds, from_command_line) {
                (Some(list), false) => {
                    out.push(Diagnostic::at(file, location_of(list), message, hint))
                }
                _ => out.push(Diagnostic::whole_file(
                    file,
                    format!("--cloud: {message}"),
                    hint,
                )),
            }
        }
    }
    if clouds.len() > 1 {
        for stage in stages {
            let why = match stage {
                Stage::Promote(_) => "copies one cloud's image into one other cloud",
                Stage::SkipUnchanged => {
                    "decides against one cloud before the build (with several clouds the build \
                     stage's own check skips every cloud that already holds the store path)"
                }
                _ => continue,
            };
            out.push(Diagnostic::whole_file(
                file,
                format!(
                    "stage `{}` {why}, but the run targets {} clouds ({})",
                    stage.name(),
                    clouds.len(),
                    clouds.join(", ")
                ),
                format!(
                    "run it once per cloud, or remove `{}` from a pipeline that publishes into \
                     several clouds",
                    stage.name()
                ),
            ));
        }
    }
    clouds
}

fn known_list<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// The stage a pipeline entry names, with its options, or `None` for an unknown name.
fn stage_of(entry: &StageEntry) -> Option<Stage> {
    let kind = Kind::from_name(&entry.name)?;
    Some(match (kind, &entry.options) {
        (Kind::Evaluate, _) => Stage::Evaluate,
        (Kind::SkipUnchanged, _) => Stage::SkipUnchanged,
        (Kind::Build, StageOptions::Build(o)) => Stage::Build(o.clone()),
        (Kind::Build, _) => Stage::Build(Default::default()),
        (Kind::Tag, _) => Stage::Tag,
        (Kind::Verify, _) => Stage::Verify,
        (Kind::BootCheck, StageOptions::BootCheck(o)) => Stage::BootCheck(o.clone()),
        (Kind::BootCheck, _) => Stage::BootCheck(Default::default()),
        (Kind::Upload, StageOptions::Upload(o)) => Stage::Upload(o.clone()),
        (Kind::Upload, _) => Stage::Upload(Default::default()),
        (Kind::Promote, StageOptions::Promote(o)) => Stage::Promote(o.clone()),
        // Without options there is no source cloud: validation reports it.
        (Kind::Promote, _) => return None,
    })
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
            format!(
                "list the stages to run, e.g. [{}]",
                Kind::names().join(", ")
            ),
        ));
        return Vec::new();
    }
    let mut provided: BTreeSet<Slot> = BTreeSet::from([Slot::Profile]);
    let mut seen = BTreeSet::new();
    let mut result = Vec::new();
    // A publishing pipeline proves by default that its images read their metadata.
    let publishes = stages.value.iter().any(|e| e.value.name == "upload");
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
        let Some(mut stage) = stage_of(&entry.value) else {
            out.push(Diagnostic::at(
                file,
                loc,
                format!("unknown stage `{name}`"),
                format!("use one of: {}", Kind::names().join(", ")),
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
        let template = match &stage {
            Stage::Upload(o) => o.name.as_deref(),
            Stage::Promote(o) => o.name.as_deref(),
            _ => None,
        };
        if let Some(Err(e)) = template.map(crate::names::check_image_name) {
            out.push(Diagnostic::at(
                file,
                loc,
                format!(
                    "stage `{name}` has an unsafe image name `{}`: {e}",
                    template.unwrap_or_default().escape_debug()
                ),
                "use a name like `hephaestus-{profile}`",
            ));
        }
        let members = match &stage {
            Stage::Upload(o) => o.members.as_deref(),
            Stage::Promote(o) => o.members.as_deref(),
            _ => None,
        };
        if let Some(members) = members.filter(|m| !m.is_empty()) {
            if visibility != Some(crate::glance::Visibility::Shared) {
                out.push(Diagnostic::at(
                    file,
                    loc,
                    format!("stage `{name}` lists members, but only a shared image has members"),
                    "add `visibility: shared`, or remove `members`",
                ));
            }
            if let Some(bad) = members.iter().find(|m| {
                m.is_empty()
                    || m.len() > 64
                    || !m
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }) {
                out.push(Diagnostic::at(
                    file,
                    loc,
                    format!(
                        "stage `{name}` has a member `{}` that is not a project id",
                        bad.escape_debug()
                    ),
                    "list Keystone project ids (`openstack project show NAME -f value -c id`)",
                ));
            }
        }
        if visibility == Some(crate::glance::Visibility::Unknown) {
            out.push(Diagnostic::at(
                file,
                loc,
                format!("stage `{name}` has an unknown visibility"),
                "use one of: private, shared, community, public",
            ));
        }
        if let Stage::BootCheck(o) = &mut stage {
            let metadata = *o.metadata.get_or_insert(if publishes {
                Metadata::ConfigDrive
            } else {
                Metadata::None
            });
            if metadata == Metadata::ConfigDrive && o.marker.is_some() {
                out.push(Diagnostic::at(
                    file,
                    loc,
                    "`boot-check` has a `marker`, but with `metadata: config-drive` (the default \
                     of a publishing pipeline) the marker is `<the config drive's host name> login:`",
                    "remove `marker:`, or set `metadata: none` to boot without a config drive and \
                     wait for that marker",
                ));
            }
            if o.skip.as_deref().is_some_and(|r| r.trim().is_empty()) {
                out.push(Diagnostic::at(
                    file,
                    loc,
                    "`boot-check: {skip: …}` needs a reason",
                    "write why the images are not booted, e.g. `skip: \"no QEMU on this builder\"`",
                ));
            }
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
        let kind = stage.kind();
        for need in kind.needs() {
            if !provided.contains(need) {
                let by = Kind::provider_of(*need).map_or("?", Kind::name);
                let hint = if *need == Slot::Booted {
                    format!(
                        "add `- {by}` above `- {name}`, or, to publish without a boot proof, \
                         say why: `- {by}: {{skip: \"reason\"}}`"
                    )
                } else {
                    format!("add `- {by}` above `- {name}`")
                };
                out.push(Diagnostic::at(
                    file,
                    loc,
                    format!(
                        "`{name}` needs `{by}` before it (it uses the {need} that `{by}` provides)"
                    ),
                    hint,
                ));
            }
        }
        provided.insert(kind.provides());
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
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - build: {timeout: 5}\n  - tag\n  - verify\n  - boot-check: {skip: no QEMU here}\n  - upload:\n      name: img-{profile}\n      method: direct\n",
        )
        .expect("valid");
        let names: Vec<&str> = plan.stages.iter().map(Stage::name).collect();
        assert_eq!(
            names,
            ["evaluate", "build", "tag", "verify", "boot-check", "upload"]
        );
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
            clouds: vec!["production".into()],
            flake: Some("path:/elsewhere".into()),
            profiles: vec![],
        };
        let plan =
            load_pipeline(&project, &dir.path().join("pipelines/p.yaml"), &o).expect("valid");
        assert_eq!(plan.clouds, ["production"]);
        assert_eq!(plan.flake.as_deref(), Some("path:/elsewhere"));
    }

    #[test]
    fn several_clouds_come_from_clouds_or_repeated_cloud_flags() {
        let plan = plan_of(
            "name: p\nclouds: [staging, dr]\nprofiles: all\nstages: [evaluate, build, tag, verify, {boot-check: {skip: none here}}, upload]\n",
        )
        .expect("valid");
        assert_eq!(plan.clouds, ["staging", "dr"]);
        assert_eq!(plan.cloud(), Some("staging"));
    }

    #[test]
    fn cloud_lists_that_cannot_work_are_refused_with_their_fix() {
        let both = problems(plan_of(
            "name: p\ncloud: a\nclouds: [b]\nprofiles: all\nstages: [evaluate]\n",
        ));
        assert_eq!(both.len(), 1, "{both:?}");
        assert!(
            both[0].message.contains("both `cloud` and `clouds`"),
            "{both:?}"
        );
        assert_eq!(both[0].line, 3);

        let twice = problems(plan_of(
            "name: p\nclouds: [a, b, a]\nprofiles: all\nstages: [evaluate]\n",
        ));
        assert!(twice[0].message.contains("`a` is named twice"), "{twice:?}");

        let empty = problems(plan_of(
            "name: p\nclouds: []\nprofiles: all\nstages: [evaluate]\n",
        ));
        assert!(
            empty[0].message.contains("cloud list is empty"),
            "{empty:?}"
        );

        // promote and skip-unchanged work against one cloud.
        for stages in [
            "[evaluate, skip-unchanged, build, tag, verify, {boot-check: {skip: x}}, upload]",
            "[evaluate, {promote: {from: staging}}]",
        ] {
            let ds = problems(plan_of(&format!(
                "name: p\nclouds: [a, b]\nprofiles: all\nstages: {stages}\n"
            )));
            assert_eq!(ds.len(), 1, "{stages}: {ds:?}");
            assert!(ds[0].message.contains("targets 2 clouds (a, b)"), "{ds:?}");
            assert!(
                ds[0]
                    .hint
                    .as_deref()
                    .unwrap_or_default()
                    .contains("once per cloud"),
                "{ds:?}"
            );
        }
    }

    #[test]
    fn every_reserved_tag_and_key_is_refused_at_its_line() {
        // `keep` on a profile would land on every image of it: retention would never prune.
        let dir = project_with(&[(
            "profiles/lucy.yaml",
            "name: lucy\ndescription: d\nrole: r\nboot: uefi\ntags:\n  - kubernetes\n  - keep\n  - current\n  - profile:x\nproperties:\n  hephaestus_anything: x\n  hw_machine_type: pc\n  hw_watchdog_action: reset\n",
        )]);
        let (project, ds) = Project::load(dir.path()).expect("load");
        let found: Vec<(u64, &str)> = ds.iter().map(|d| (d.line, d.message.as_str())).collect();
        assert_eq!(ds.len(), 5, "{found:?}");
        assert!(ds.iter().all(|d| d.file.ends_with("profiles/lucy.yaml")));
        for (line, word) in [
            (7, "tag `keep`"),
            (8, "tag `current`"),
            (9, "tag `profile:x`"),
            (11, "property `hephaestus_anything`"),
            (12, "property `hw_machine_type`"),
        ] {
            assert!(
                found.iter().any(|(l, m)| *l == line && m.contains(word)),
                "no diagnostic for {word} at line {line}: {found:?}"
            );
        }
        assert!(!project.profiles.contains_key("lucy"));
        // Every tag the lifecycle owns is refused, from the lifecycle's own list.
        for tag in crate::lifecycle::LIFECYCLE_TAGS
            .iter()
            .chain(&[crate::lifecycle::TAG_KEEP, crate::lifecycle::TAG_HEPHAESTUS])
        {
            assert!(crate::lifecycle::reserved_tag(tag), "{tag}");
        }
    }

    #[test]
    fn unsafe_names_attributes_and_image_names_are_refused_with_the_rule() {
        let dir = project_with(&[
            ("profiles/lucy.yaml", "name: lucy\ndescription: d\nrole: r\nboot: uefi\nattribute: 'images.\"lucy\"'\n"),
            ("profiles/a.b.yaml", "name: a.b\ndescription: d\nrole: r\nboot: uefi\n"),
            ("profiles/q.yaml", "name: q\ndescription: d\nrole: r\nboot: uefi\nattribute: 'images.${builtins.abort \"x\"}'\n"),
        ]);
        let (_, ds) = Project::load(dir.path()).expect("load");
        let text: Vec<String> = ds.iter().map(ToString::to_string).collect();
        assert!(
            text.iter().any(|d| d.contains("profiles/lucy.yaml")
                && d.contains("not a safe flake attribute path")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|d| d.contains("profiles/q.yaml")
                    && d.contains("not a safe flake attribute path")),
            "{text:#?}"
        );
        assert!(
            text.iter()
                .any(|d| d.contains("profiles/a.b.yaml") && d.contains("`.` is not allowed")),
            "{text:#?}"
        );
        let ds = problems(plan_of(
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - build\n  - tag\n  - verify\n  - upload: {name: 'x;{profile}'}\n",
        ));
        assert!(
            ds.iter()
                .any(|d| d.message.contains("unsafe image name") && d.line == 8),
            "{ds:?}"
        );
        let ds = problems(plan_of(
            "name: 'bad name;$(id)'\nprofiles: all\nstages: [evaluate]\n",
        ));
        assert!(
            ds.iter().any(|d| d.message.contains("is not safe")
                && d.message.contains("` ` is not allowed")
                || d.message.contains("is not safe")),
            "{ds:?}"
        );
    }

    #[test]
    fn an_upload_without_a_boot_proof_is_refused_unless_the_pipeline_says_why() {
        let ds = problems(plan_of(
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - build\n  - tag\n  - verify\n  - upload\n",
        ));
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!(ds[0].line, 8);
        assert!(
            ds[0]
                .message
                .contains("`upload` needs `boot-check` before it"),
            "{ds:?}"
        );
        assert!(
            ds[0].hint.as_deref().unwrap_or_default().contains("skip"),
            "{ds:?}"
        );
        // After the upload is too late: the proof must come first.
        let ds = problems(plan_of(
            "name: p\nprofiles: all\nstages: [evaluate, build, tag, verify, upload, boot-check]\n",
        ));
        assert!(
            ds.iter()
                .any(|d| d.message.contains("`upload` needs `boot-check`")),
            "{ds:?}"
        );
        // An empty reason is no reason.
        let ds = problems(plan_of(
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - build\n  - tag\n  - verify\n  - boot-check: {skip: ' '}\n  - upload\n",
        ));
        assert!(
            ds.iter().any(|d| d.message.contains("needs a reason")),
            "{ds:?}"
        );
        plan_of(
            "name: p\nprofiles: all\nstages:\n  - evaluate\n  - build\n  - tag\n  - verify\n  - boot-check: {skip: the images boot in CI}\n  - upload\n",
        )
        .expect("a reason is enough");
    }
}
