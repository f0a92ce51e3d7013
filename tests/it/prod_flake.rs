//! Offline checks of the production flake in `nix/` (also run alone by `make check-flake`):
//! every `.nix` file parses, the flake declares a configuration and an image for exactly the
//! profiles in `profiles/*.yaml`, each profile module's `hephaestus.boot` agrees with its YAML
//! `boot`, sunraku's placeholders cannot ship, and the nightly module, the guest module and
//! the package are wired as the README says.
//!
//! Nothing here needs nixpkgs or the network, so nothing here proves that the images build or
//! boot: `nix/README.md` lists what the first online build must confirm. These tests need
//! `nix-instantiate` and fail (never skip) when it is missing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde::Deserialize;

/// The fields of a profile YAML these checks compare; the rest is the loader's business.
#[derive(Debug, Deserialize)]
struct Profile {
    name: String,
    boot: String,
}

#[derive(Debug, Deserialize)]
struct Policy {
    legacy_bios: Vec<String>,
}

/// What `nix/checks/flake-outputs.nix` reports about flake.nix.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FlakeOutputs {
    nixpkgs: String,
    nixos_configurations: BTreeSet<String>,
    images: BTreeSet<String>,
    nixos_modules: BTreeSet<String>,
    packages: BTreeSet<String>,
    profiles: Vec<String>,
    profile_modules: Vec<bool>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every profile in `profiles/*.yaml` (policy.yaml is not one), sorted by file name.
fn profiles() -> Vec<(PathBuf, Profile)> {
    let dir = repo().join("profiles");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "policy.yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no profiles in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let profile: Profile = serde_saphyr::from_str(&read(&path))
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, profile)
        })
        .collect()
}

/// `nix-instantiate` from PATH, or a failure that says how to get it.
fn nix_instantiate() -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nix-instantiate"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "nix-instantiate not found on PATH: these checks need Nix \
             (`make install-nix`, or `apt-get install nix-bin`)"
        )
    })
}

/// Runs `nix-instantiate ARGS` in the repository and returns its output, whatever its status.
fn run_nix_instantiate(args: &[&str]) -> (String, Output) {
    let program = nix_instantiate();
    let argv = format!("{} {}", program.display(), args.join(" "));
    let output = Command::new(&program)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running `{argv}`: {e}"));
    (argv, output)
}

/// The last lines of a command's stderr, for failure messages.
fn stderr_tail(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The values of every `hephaestus.boot = "…";` in a Nix source text.
fn declared_boot_modes(nix: &str) -> Vec<String> {
    nix.lines()
        .map(str::trim_start)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("hephaestus.boot"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .filter_map(|rest| {
            let rest = rest.trim_start().strip_prefix('"')?;
            let end = rest.find('"')?;
            Some(rest[..end].to_string())
        })
        .collect()
}

fn nix_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
            .path();
        if path.is_dir() {
            nix_files(&path, found);
        } else if path.extension().is_some_and(|x| x == "nix") {
            found.push(path);
        }
    }
}

#[test]
fn profile_modules_declare_the_boot_mode_of_their_yaml() {
    let policy: Policy = serde_saphyr::from_str(&read(&repo().join("profiles/policy.yaml")))
        .unwrap_or_else(|e| panic!("profiles/policy.yaml: {e}"));
    let mut problems = Vec::new();
    for (yaml, profile) in profiles() {
        let module = repo()
            .join("nix/modules/profiles")
            .join(format!("{}.nix", profile.name));
        if !module.is_file() {
            problems.push(format!(
                "{}: no profile module {}",
                yaml.display(),
                module.display()
            ));
            continue;
        }
        let declared = declared_boot_modes(&read(&module));
        match declared.as_slice() {
            [boot] if *boot == profile.boot => {}
            [boot] => problems.push(format!(
                "{} says hephaestus.boot = \"{boot}\" but {} says boot: {}",
                module.display(),
                yaml.display(),
                profile.boot
            )),
            other => problems.push(format!(
                "{}: expected exactly one `hephaestus.boot = \"…\";`, found {other:?}",
                module.display()
            )),
        }
        if declared.iter().any(|b| b == "bios") && !policy.legacy_bios.contains(&profile.name) {
            problems.push(format!(
                "{} boots legacy BIOS but profiles/policy.yaml does not list {} in legacy_bios",
                module.display(),
                profile.name
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn declared_boot_modes_reads_only_assignments() {
    let nix =
        "# hephaestus.boot = \"bios\";\n  hephaestus.boot = \"uefi\";\n  hephaestus.bootx = 1;\n";
    assert_eq!(declared_boot_modes(nix), vec!["uefi".to_string()]);
}

#[test]
fn flake_declares_a_configuration_and_an_image_for_every_profile() {
    let (argv, output) = run_nix_instantiate(&[
        "--eval",
        "--strict",
        "--json",
        "nix/checks/flake-outputs.nix",
    ]);
    assert!(
        output.status.success(),
        "`{argv}` failed ({}):\n{}",
        output.status,
        stderr_tail(&output)
    );
    let outputs: FlakeOutputs = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "`{argv}` printed no valid JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    });

    let expected: BTreeSet<String> = profiles().into_iter().map(|(_, p)| p.name).collect();
    assert_eq!(
        outputs.nixos_configurations, expected,
        "nixosConfigurations vs profiles/*.yaml"
    );
    assert_eq!(outputs.images, expected, "images vs profiles/*.yaml");
    assert_eq!(
        outputs.profiles.iter().cloned().collect::<BTreeSet<_>>(),
        expected,
        "nix/profiles.nix vs profiles/*.yaml"
    );
    assert!(
        outputs.profile_modules.iter().all(|exists| *exists),
        "a module under nix/modules/profiles/ is missing for one of {:?}",
        outputs.profiles
    );
    assert!(
        outputs.nixos_modules.contains("pipeline-nightly"),
        "nixosModules: {:?}",
        outputs.nixos_modules
    );
    assert!(
        outputs.packages.contains("pipeline"),
        "packages: {:?}",
        outputs.packages
    );
    assert!(
        outputs.nixpkgs.starts_with("github:NixOS/nixpkgs/nixos-"),
        "nixpkgs must follow a NixOS release branch, not {}",
        outputs.nixpkgs
    );
}

#[test]
fn every_nix_file_parses() {
    let mut files = Vec::new();
    nix_files(&repo().join("nix"), &mut files);
    files.sort();
    assert!(
        files.len() >= 10,
        "expected the flake and its modules under nix/, found {files:?}"
    );
    let mut problems = Vec::new();
    for file in &files {
        let path = file.to_string_lossy();
        let (argv, output) = run_nix_instantiate(&["--parse", &path]);
        if !output.status.success() {
            problems.push(format!(
                "`{argv}` failed ({}):\n{}",
                output.status,
                stderr_tail(&output)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}

/// The parse check above is only worth something if a syntax error makes it fail.
#[test]
fn parse_check_rejects_a_syntax_error() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("creating a temporary directory: {e}"));
    let broken = dir.path().join("broken.nix");
    std::fs::write(&broken, "{ a = ; }\n")
        .unwrap_or_else(|e| panic!("writing {}: {e}", broken.display()));
    let (argv, output) = run_nix_instantiate(&["--parse", &broken.to_string_lossy()]);
    assert!(!output.status.success(), "`{argv}` accepted a syntax error");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("syntax error"),
        "`{argv}` failed without naming the syntax error:\n{}",
        stderr_tail(&output)
    );
}

/// What `nix/checks/package.nix` reports about the package's install steps.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PackageSteps {
    post_install: String,
    native_build_inputs: Vec<String>,
}

/// Stand-ins for the nixpkgs shell functions the package calls, with their interfaces:
/// `installManPage FILE…` and `installShellCompletion --cmd NAME --bash|--zsh|--fish FILE`.
const INSTALL_STUBS: &str = r#"
set -euo pipefail
installManPage() {
    for page; do
        section=${page##*.}
        mkdir -p "$out/share/man/man$section"
        cp "$page" "$out/share/man/man$section/"
    done
}
installShellCompletion() {
    local cmd=
    while [ $# -gt 0 ]; do
        case $1 in
            --cmd) cmd=$2 ;;
            --bash) mkdir -p "$out/share/bash-completion/completions"
                    cat "$2" > "$out/share/bash-completion/completions/$cmd.bash" ;;
            --zsh) mkdir -p "$out/share/zsh/site-functions"
                   cat "$2" > "$out/share/zsh/site-functions/_$cmd" ;;
            --fish) mkdir -p "$out/share/fish/vendor_completions.d"
                    cat "$2" > "$out/share/fish/vendor_completions.d/$cmd.fish" ;;
            *) echo "installShellCompletion: unexpected $1" >&2; exit 9 ;;
        esac
        shift 2
    done
}
wrapProgram() { test -x "$1"; }
eval "$POST_INSTALL"
"#;

#[test]
fn the_package_installs_the_man_pages_and_the_completions() {
    let (argv, output) =
        run_nix_instantiate(&["--eval", "--strict", "--json", "nix/checks/package.nix"]);
    assert!(
        output.status.success(),
        "`{argv}` failed:\n{}",
        stderr_tail(&output)
    );
    let steps: PackageSteps = serde_json::from_slice(&output.stdout).expect("package.nix JSON");
    assert!(
        steps
            .native_build_inputs
            .contains(&"installShellFiles".to_string()),
        "{steps:?}"
    );

    let build = tempfile::tempdir().expect("tempdir");
    let out = build.path().join("out");
    std::fs::create_dir_all(out.join("bin")).expect("mkdir out/bin");
    std::fs::copy(
        assert_cmd::cargo::cargo_bin("pipeline"),
        out.join("bin/pipeline"),
    )
    .expect("copy the binary");
    let status = Command::new("bash")
        .arg("-c")
        .arg(INSTALL_STUBS)
        .env("out", &out)
        .env("POST_INSTALL", &steps.post_install)
        .current_dir(build.path())
        .output()
        .expect("run bash");
    assert!(
        status.status.success(),
        "the postInstall script failed:\n{}\n{}",
        steps.post_install,
        stderr_tail(&status)
    );

    let man1 = out.join("share/man/man1");
    let page = read(&man1.join("pipeline.1"));
    assert!(page.contains(".TH pipeline 1"), "{page}");
    for subcommand in ["run", "validate", "promote", "completions"] {
        assert!(
            man1.join(format!("pipeline-{subcommand}.1")).is_file(),
            "no man page for {subcommand}"
        );
    }
    let bash = read(&out.join("share/bash-completion/completions/pipeline.bash"));
    assert!(bash.contains("complete -F _pipeline"), "{bash}");
    let zsh = read(&out.join("share/zsh/site-functions/_pipeline"));
    assert!(zsh.starts_with("#compdef pipeline"), "{zsh}");
    let fish = read(&out.join("share/fish/vendor_completions.d/pipeline.fish"));
    assert!(fish.contains("complete -c pipeline"), "{fish}");
}

/// The production images are ready for the boot check's metadata proof: cloud-init looks for a
/// config drive first, and the serial getty (whose prompt is `<hostname> login:`) starts only
/// after cloud-init has set the host name. Evaluated from the module alone, without nixpkgs.
#[test]
fn the_serial_getty_shows_the_host_name_cloud_init_set_from_the_config_drive() {
    let module = "(import ./nix/modules/openstack-guest.nix { lib = { mkDefault = x: x; }; \
                  modulesPath = /nonexistent; })";
    let eval = |attr: &str| {
        let expr = format!("{module}.{attr}");
        let (argv, output) = run_nix_instantiate(&["--eval", "--strict", "--json", "-E", &expr]);
        assert!(
            output.status.success(),
            "`{argv}` failed ({}):\n{}",
            output.status,
            stderr_tail(&output)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout)
            .unwrap_or_else(|e| panic!("`{argv}`: {e}"))
    };
    let getty = eval("systemd.services.\"serial-getty@ttyS0\"");
    assert_eq!(
        getty["after"],
        serde_json::json!(["cloud-init.service"]),
        "{getty}"
    );
    assert_eq!(
        getty["wants"],
        serde_json::json!(["cloud-init.service"]),
        "{getty}"
    );
    let sources = eval("services.cloud-init.settings.datasource_list");
    assert_eq!(sources[0], "ConfigDrive", "{sources}");
    let params = eval("boot.kernelParams");
    assert_eq!(
        params.as_array().and_then(|p| p.last()),
        Some(&serde_json::json!("console=ttyS0,115200")),
        "ttyS0 must be the last console, /dev/console: {params}"
    );
}

#[test]
fn the_nightly_module_links_its_metrics_into_node_exporters_textfile_directory() {
    // nix/checks/nightly.nix evaluates the module with and without node_exporter's textfile
    // collector, and with an explicit metricsTextfileDirectory.
    let (argv, output) = run_nix_instantiate(&[
        "--eval",
        "--strict",
        "--json",
        "-E",
        "import ./nix/checks/nightly.nix",
    ]);
    assert!(
        output.status.success(),
        "`{argv}` failed:\n{}",
        stderr_tail(&output)
    );
    let facts: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("nightly.nix prints JSON");
    // It adds to nix.settings.allowed-users (never replaces NixOS's [ "*" ]), puts nix on the
    // unit's PATH, makes the checkout read-only to the unit, and writes the run's metrics.
    for fact in [
        "allowedUsersMerged",
        "nixOnPath",
        "checkoutReadOnly",
        "assertionsPass",
        "metricsWritten",
        "metricsInTextfileDirectory",
    ] {
        assert_eq!(facts[fact], true, "{fact}: {facts}");
    }
}

/// The messages of the sunraku module's failing assertions for these Netbird values
/// (`nix/checks/placeholders.nix`).
fn sunraku_assertions(domain: &str, oidc_issuer: &str) -> Vec<String> {
    let expr = format!(
        "import ./nix/checks/placeholders.nix {{ domain = \"{domain}\"; oidcIssuer = \"{oidc_issuer}\"; }}"
    );
    let (argv, output) = run_nix_instantiate(&["--eval", "--strict", "--json", "-E", &expr]);
    assert!(
        output.status.success(),
        "`{argv}` failed:\n{}",
        stderr_tail(&output)
    );
    serde_json::from_slice(&output.stdout).expect("placeholders.nix prints a JSON list")
}

#[test]
fn sunrakus_placeholders_fail_evaluation_naming_the_option_and_real_values_pass() {
    let failing = sunraku_assertions("vpn.hephaestus.example", "https://auth.hephaestus.example");
    for option in ["hephaestus.netbird.domain", "hephaestus.netbird.oidcIssuer"] {
        assert!(
            failing
                .iter()
                .any(|m| m.contains(&format!("{option} is still the placeholder"))),
            "the placeholder {option} does not fail evaluation: {failing:?}"
        );
    }
    let real = sunraku_assertions("vpn.estate.org", "https://auth.estate.org/realms/estate");
    assert!(real.is_empty(), "real values fail an assertion: {real:?}");
}
