//! Choosing a cloud and opening an authenticated osauth session on it, from `clouds.yaml`
//! (`--cloud`, `OS_CLOUD`, `OS_CLIENT_CONFIG_FILE`) or from `OS_*` variables.
//!
//! osauth 0.5 only looks for `clouds.yaml` in the current directory, `~/.config/openstack`
//! and `/etc/openstack`, and ignores `OS_CLIENT_CONFIG_FILE`. So the file is found and read
//! here and its entry handed to osauth as a [`CloudConfig`]; osauth still does the
//! authentication, token refresh and catalog lookup. As openstacksdk does, the entry is laid
//! over its vendor profile (`profile:`, from `clouds-public.yaml`), `secure.yaml`'s entry of
//! the same name is deep-merged over it (`OS_CLIENT_SECURE_FILE`, else `./`,
//! `~/.config/openstack/`, `/etc/openstack/`), and `OS_REGION_NAME` / `OS_INTERFACE` fill a
//! region or interface the entry leaves open.
//!
//! A cloud entry may set openstacksdk's `image_endpoint_override`: Glance is then reached at
//! that URL instead of the catalog's image endpoint, while the token still comes from
//! Keystone. It serves clouds whose catalog names an address the client cannot reach, and
//! the fault-injection tests, which put a proxy in front of Glance. osauth applies any
//! `<service>_endpoint_override` key itself; this module checks the value first so that a bad
//! one is a configuration error naming the file and the cloud.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use osauth::CloudConfig;

use super::api::Glance;
use super::error::Error;

/// Where process settings come from; injected so cloud selection is testable.
pub trait Env {
    /// An environment variable, `None` when unset or empty.
    fn var(&self, name: &str) -> Option<String>;
    /// The user's home directory.
    fn home_dir(&self) -> Option<PathBuf>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn home_dir(&self) -> Option<PathBuf> {
        self.var("HOME").map(PathBuf::from)
    }
}

/// The cloud name (openstacksdk's) that stands for the `OS_*` variables.
pub const ENVVARS: &str = "envvars";

/// The cloud to talk to, decided before any file is parsed or request sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudChoice {
    /// An entry of a `clouds.yaml` file.
    Named {
        /// The entry's name.
        name: String,
        /// The file holding it.
        file: PathBuf,
    },
    /// `OS_AUTH_URL`, `OS_USERNAME`, ... from the environment.
    Environment,
}

impl CloudChoice {
    /// How messages name this cloud.
    pub fn label(&self) -> String {
        match self {
            Self::Named { name, .. } => name.clone(),
            Self::Environment => "from OS_* environment".to_owned(),
        }
    }
}

/// Decides which cloud to use: `explicit` (`--cloud`), else `OS_CLOUD`, both looked up in
/// `clouds.yaml`; else the `OS_*` variables when `OS_AUTH_URL` is set.
pub fn choose_cloud(explicit: Option<&str>, env: &impl Env) -> Result<CloudChoice, Error> {
    let name = explicit
        .map(str::to_owned)
        .filter(|n| !n.is_empty())
        .or_else(|| env.var("OS_CLOUD"));
    // openstacksdk's name for the cloud the OS_* variables describe: it lets a pipeline
    // that names a cloud run on credentials from the environment (CI, timers).
    if name.as_deref() == Some(ENVVARS) {
        if env.var("OS_AUTH_URL").is_some() || env.var("OS_AUTH_TYPE").is_some() {
            return Ok(CloudChoice::Environment);
        }
        return Err(Error::Config {
            message: format!(
                "cloud `{ENVVARS}` means the OS_* variables, and OS_AUTH_URL is not set"
            ),
        });
    }
    if let Some(name) = name {
        let file = find_clouds_yaml(env)?;
        return Ok(CloudChoice::Named { name, file });
    }
    if env.var("OS_AUTH_URL").is_some() {
        return Ok(CloudChoice::Environment);
    }
    Err(Error::Config {
        message: "no cloud selected: pass --cloud NAME or set OS_CLOUD (a clouds.yaml entry), \
                  or set OS_AUTH_URL and the other OS_* variables"
            .to_owned(),
    })
}

/// `OS_CLIENT_CONFIG_FILE` when set (it must exist), else the first of `./clouds.yaml`,
/// `~/.config/openstack/clouds.yaml`, `/etc/openstack/clouds.yaml` that exists.
pub fn find_clouds_yaml(env: &impl Env) -> Result<PathBuf, Error> {
    if let Some(file) = env.var("OS_CLIENT_CONFIG_FILE") {
        let file = PathBuf::from(file);
        if file.is_file() {
            return Ok(file);
        }
        return Err(Error::Config {
            message: format!(
                "OS_CLIENT_CONFIG_FILE names {}, which does not exist (for the local clouds: make cloud-up)",
                file.display()
            ),
        });
    }
    let mut candidates = vec![PathBuf::from("clouds.yaml")];
    if let Some(home) = env.home_dir() {
        candidates.push(home.join(".config/openstack/clouds.yaml"));
    }
    candidates.push(PathBuf::from("/etc/openstack/clouds.yaml"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| Error::Config {
            message: format!(
                "no clouds.yaml found (looked at OS_CLIENT_CONFIG_FILE, {})",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}

/// A cloud entry: osauth's configuration plus the keys this client reads itself.
#[derive(Debug)]
pub struct Loaded {
    /// What osauth authenticates with.
    pub config: CloudConfig,
    /// openstacksdk's `api_timeout` (seconds): how long a call may go without anything
    /// moving before it is abandoned.
    pub api_timeout: Option<std::time::Duration>,
}

/// The clouds.yaml key (openstacksdk's) of the API timeout, in seconds.
pub const API_TIMEOUT: &str = "api_timeout";

/// Parses the text of a `clouds.yaml` and returns the entry `name` as osauth's config.
/// `path` only names the file in messages. Messages never quote values (they hold passwords).
pub fn parse_clouds_yaml(text: &str, name: &str, path: &Path) -> Result<CloudConfig, Error> {
    parse_cloud_entry(text, name, path).map(|l| l.config)
}

/// [`parse_clouds_yaml`], with the keys this client reads itself.
pub fn parse_cloud_entry(text: &str, name: &str, path: &Path) -> Result<Loaded, Error> {
    let entry = entry_of(text, name, path)?;
    finish_entry(entry, name, path)
}

/// The YAML of a clouds.yaml-like file (`clouds:` or `public-clouds:` at the top), never
/// quoting it in an error (it may hold a secret).
fn yaml_mapping(
    text: &str,
    key: &str,
    path: &Path,
) -> Result<BTreeMap<String, serde_json::Value>, Error> {
    let doc: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| Error::Config {
        message: match e.location() {
            Some(at) => format!(
                "{}:{}:{}: not valid YAML, or not a clouds.yaml with a `clouds` mapping (the \
                 text is not shown: it may hold a secret)",
                path.display(),
                at.line(),
                at.column()
            ),
            None => format!(
                "{}: not valid YAML, or not a clouds.yaml with a `clouds` mapping (the text is \
                 not shown: it may hold a secret)",
                path.display()
            ),
        },
    })?;
    match doc.get(key) {
        Some(serde_json::Value::Object(map)) => Ok(map.clone().into_iter().collect()),
        _ => Err(Error::Config {
            message: format!(
                "{}: not valid YAML, or not a clouds.yaml with a `{key}` mapping",
                path.display()
            ),
        }),
    }
}

/// Cloud `name`'s entry of the clouds.yaml text.
fn entry_of(text: &str, name: &str, path: &Path) -> Result<serde_json::Value, Error> {
    let clouds = yaml_mapping(text, "clouds", path)?;
    clouds.get(name).cloned().ok_or_else(|| Error::Config {
        message: format!(
            "{}: no cloud named {name} (it has: {})",
            path.display(),
            clouds.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    })
}

/// `over` merged into `base`, maps key by key (openstacksdk's deep merge).
fn deep_merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => deep_merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The checks and conversion of a (merged) entry.
fn finish_entry(entry: serde_json::Value, name: &str, path: &Path) -> Result<Loaded, Error> {
    let entry = &entry;
    check_image_endpoint_override(entry, name, path)?;
    let mut entry = entry.clone();
    let api_timeout = match entry.as_object_mut().and_then(|o| o.remove(API_TIMEOUT)) {
        None => None,
        Some(v) => match v
            .as_f64()
            .or_else(|| v.as_str().and_then(|t| t.parse().ok()))
        {
            Some(secs) if secs > 0.0 && secs.is_finite() => {
                Some(std::time::Duration::from_secs_f64(secs))
            }
            _ => {
                return Err(Error::Config {
                    message: format!(
                        "{}: cloud {name}: {API_TIMEOUT} must be a positive number of seconds, \
                         found {v}",
                        path.display()
                    ),
                })
            }
        },
    };
    if let Some(auth) = entry.get("auth").and_then(serde_json::Value::as_object) {
        if let Some((key, _)) = auth.iter().find(|(_, v)| !v.is_string()) {
            return Err(Error::Config {
                message: format!(
                    "{}: cloud {name}: auth.{key} must be a string (quote it; its value is not \
                     shown)",
                    path.display()
                ),
            });
        }
    }
    // serde's messages quote the offending value, which may be a secret: only its kind is told.
    let config = serde_json::from_value(entry).map_err(|e| Error::Config {
        message: format!(
            "{}: cloud {name} is not a valid entry ({}; values are not shown)",
            path.display(),
            match e.classify() {
                serde_json::error::Category::Data =>
                    "a key has a value of the wrong type, or a \
                                                      required key is missing",
                _ => "it cannot be read",
            }
        ),
    })?;
    Ok(Loaded {
        config,
        api_timeout,
    })
}

/// The clouds.yaml key (openstacksdk's) that replaces the catalog's image endpoint.
pub const IMAGE_ENDPOINT_OVERRIDE: &str = "image_endpoint_override";

/// Checks `image_endpoint_override` of a cloud entry, when present: an http(s) URL. Its
/// value is quoted in the message (an endpoint is not a secret; the rest of the entry is
/// never quoted).
fn check_image_endpoint_override(
    entry: &serde_json::Value,
    name: &str,
    path: &Path,
) -> Result<(), Error> {
    let Some(value) = entry.get(IMAGE_ENDPOINT_OVERRIDE) else {
        return Ok(());
    };
    let bad = |why: String| Error::Config {
        message: format!(
            "{}: cloud {name}: {IMAGE_ENDPOINT_OVERRIDE} {why}",
            path.display()
        ),
    };
    let text = value
        .as_str()
        .ok_or_else(|| bad(format!("must be a URL string, found {value}")))?;
    let url = reqwest::Url::parse(text).map_err(|e| bad(format!("`{text}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
        return Err(bad(format!("`{text}` is not an http(s) URL")));
    }
    tracing::debug!(cloud = name, endpoint = text, "image endpoint overridden");
    Ok(())
}

/// Loads the configuration of a chosen cloud.
pub fn load_cloud_config(choice: &CloudChoice) -> Result<Loaded, Error> {
    load_cloud_config_with(choice, &ProcessEnv)
}

/// Reads a small configuration file, refusing anything but a regular file under 1 MiB.
fn read_config(file: &Path) -> Result<String, Error> {
    use crate::bounded;
    bounded::read_text(file, bounded::MAX_CONFIG_BYTES).map_err(|e| match e {
        bounded::Error::Io(source) => Error::ReadConfig {
            path: file.to_path_buf(),
            source,
        },
        refused => Error::Config {
            message: format!("{} {refused}", file.display()),
        },
    })
}

/// `name` in the directories openstacksdk searches: `./`, `~/.config/openstack/`,
/// `/etc/openstack/` (after `variable`, when it names a file).
fn find_companion(env: &impl Env, variable: &str, name: &str) -> Result<Option<PathBuf>, Error> {
    if let Some(file) = env.var(variable) {
        let file = PathBuf::from(file);
        return if file.is_file() {
            Ok(Some(file))
        } else {
            Err(Error::Config {
                message: format!("{variable} names {}, which does not exist", file.display()),
            })
        };
    }
    let mut candidates = vec![PathBuf::from(name)];
    if let Some(home) = env.home_dir() {
        candidates.push(home.join(".config/openstack").join(name));
    }
    candidates.push(Path::new("/etc/openstack").join(name));
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

/// [`load_cloud_config`] with the given environment: the clouds.yaml entry over its vendor
/// profile (`profile:` of clouds-public.yaml), with secure.yaml's entry deep-merged over it,
/// as openstacksdk reads them.
pub fn load_cloud_config_with(choice: &CloudChoice, env: &impl Env) -> Result<Loaded, Error> {
    match choice {
        CloudChoice::Named { name, file } => {
            let mut entry = entry_of(&read_config(file)?, name, file)?;
            if let Some(profile) = entry.as_object_mut().and_then(|o| o.remove("profile")) {
                let profile = profile.as_str().unwrap_or_default().to_string();
                let Some(public) =
                    find_companion(env, "OS_CLIENT_VENDOR_FILE", "clouds-public.yaml")?
                else {
                    return Err(Error::Config {
                        message: format!(
                            "{}: cloud {name} uses profile `{profile}`, and no clouds-public.yaml \
                             was found (./, ~/.config/openstack/, /etc/openstack/)",
                            file.display()
                        ),
                    });
                };
                let vendors = yaml_mapping(&read_config(&public)?, "public-clouds", &public)?;
                let Some(vendor) = vendors.get(&profile).cloned() else {
                    return Err(Error::Config {
                        message: format!(
                            "{}: no profile `{profile}` (it has: {})",
                            public.display(),
                            vendors.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    });
                };
                let mut merged = vendor;
                deep_merge(&mut merged, entry);
                entry = merged;
            }
            // A region or interface the entry leaves open comes from the environment.
            for (key, variable) in [
                ("region_name", "OS_REGION_NAME"),
                ("interface", "OS_INTERFACE"),
            ] {
                if let (Some(obj), Some(value)) = (entry.as_object_mut(), env.var(variable)) {
                    obj.entry(key).or_insert(serde_json::Value::String(value));
                }
            }
            if let Some(secure) = find_companion(env, "OS_CLIENT_SECURE_FILE", "secure.yaml")? {
                let secrets = yaml_mapping(&read_config(&secure)?, "clouds", &secure)?;
                if let Some(own) = secrets.get(name) {
                    deep_merge(&mut entry, own.clone());
                }
            }
            finish_entry(entry, name, file)
        }
        CloudChoice::Environment => Ok(Loaded {
            config: CloudConfig::from_env().map_err(|e| Error::Config {
                message: format!("the OS_* environment does not describe a cloud: {e}"),
            })?,
            api_timeout: None,
        }),
    }
}

/// Chooses a cloud as [`choose_cloud`] does with the process environment, authenticates
/// and finds its image endpoint.
pub async fn connect(explicit_cloud: Option<&str>) -> Result<Glance, Error> {
    connect_to(&choose_cloud(explicit_cloud, &ProcessEnv)?).await
}

/// Authenticates to a chosen cloud and finds its image endpoint.
pub async fn connect_to(choice: &CloudChoice) -> Result<Glance, Error> {
    let loaded = load_cloud_config(choice)?;
    let label = choice.label();
    let session = loaded
        .config
        .create_session()
        .await
        .map_err(|source| Error::Connect {
            cloud: label.clone(),
            source,
        })?;
    let endpoint = session
        .get_endpoint(osauth::services::IMAGE, std::iter::empty::<&str>())
        .await
        .map_err(|source| Error::Connect {
            cloud: label.clone(),
            source,
        })?;
    let glance = Glance::new(label, session, &endpoint)?;
    Ok(match loaded.api_timeout {
        Some(t) => glance.with_api_timeout(t),
        None => glance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct FakeEnv(HashMap<&'static str, String>, Option<PathBuf>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).cloned()
        }
        fn home_dir(&self) -> Option<PathBuf> {
            self.1.clone()
        }
    }

    fn clouds_file() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clouds.yaml");
        std::fs::write(&path, CLOUDS).unwrap();
        (dir, path)
    }

    const CLOUDS: &str = "clouds:\n  local:\n    auth:\n      auth_url: http://127.0.0.1:15000/v3\n      \
        username: publisher\n      password: s3cret-word\n      project_name: hephaestus\n      \
        user_domain_name: Default\n      project_domain_name: Default\n    region_name: RegionOne\n    \
        interface: public\n    identity_api_version: 3\n";

    #[test]
    fn explicit_cloud_wins_over_os_cloud_and_config_file_is_honoured() {
        let (_dir, path) = clouds_file();
        let env = FakeEnv(
            HashMap::from([
                ("OS_CLOUD", "other".to_owned()),
                ("OS_CLIENT_CONFIG_FILE", path.display().to_string()),
            ]),
            None,
        );
        let choice = choose_cloud(Some("local"), &env).unwrap();
        assert_eq!(
            choice,
            CloudChoice::Named {
                name: "local".into(),
                file: path.clone()
            }
        );
        let choice = choose_cloud(None, &env).unwrap();
        assert_eq!(
            choice,
            CloudChoice::Named {
                name: "other".into(),
                file: path
            }
        );
    }

    #[test]
    fn environment_is_the_fallback_and_nothing_is_an_error() {
        let env = FakeEnv(
            HashMap::from([("OS_AUTH_URL", "http://k/v3".to_owned())]),
            None,
        );
        assert_eq!(choose_cloud(None, &env).unwrap(), CloudChoice::Environment);
        let none = FakeEnv(HashMap::new(), None);
        assert!(choose_cloud(None, &none)
            .unwrap_err()
            .to_string()
            .contains("no cloud selected"));
    }

    #[test]
    fn missing_config_file_is_named() {
        let env = FakeEnv(
            HashMap::from([(
                "OS_CLIENT_CONFIG_FILE",
                "/nonexistent/clouds.yaml".to_owned(),
            )]),
            None,
        );
        let err = choose_cloud(Some("local"), &env).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/clouds.yaml"),
            "{err}"
        );
    }

    #[test]
    fn entry_is_parsed_and_unknown_names_list_the_known_ones_without_secrets() {
        let path = Path::new("clouds.yaml");
        parse_clouds_yaml(CLOUDS, "local", path).unwrap();
        let err = parse_clouds_yaml(CLOUDS, "prod", path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no cloud named prod (it has: local)"), "{err}");
        assert!(!err.contains("s3cret"));
    }

    #[test]
    fn image_endpoint_override_is_kept_for_osauth_and_a_bad_one_is_named() {
        let path = Path::new("clouds.yaml");
        let with = |value: &str| {
            CLOUDS.replace(
                "    identity_api_version: 3\n",
                &format!("    identity_api_version: 3\n    image_endpoint_override: {value}\n"),
            )
        };
        // osauth turns every `<service>_endpoint_override` it is handed into a session
        // override; what it is handed must therefore still hold the key.
        let config = parse_clouds_yaml(&with("http://127.0.0.1:40123"), "local", path).unwrap();
        let handed = serde_json::to_value(&config).unwrap();
        assert_eq!(
            handed[IMAGE_ENDPOINT_OVERRIDE].as_str(),
            Some("http://127.0.0.1:40123"),
            "{handed}"
        );

        for (value, says) in [
            ("not a url", "is not a URL"),
            ("ftp://127.0.0.1/", "is not an http(s) URL"),
            ("[1, 2]", "must be a URL string"),
        ] {
            let err = parse_clouds_yaml(&with(value), "local", path)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("clouds.yaml: cloud local: image_endpoint_override"),
                "{err}"
            );
            assert!(err.contains(says), "{value}: {err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn a_broken_clouds_yaml_never_shows_the_secret() {
        let path = Path::new("clouds.yaml");
        let cases = [
            (
                "    password: \"canary-s3cret\n    project_name: p\n",
                "clouds.yaml:6:",
            ),
            (
                "    password: 987654321\n",
                "auth.password must be a string",
            ),
            (
                "    password: [canary-s3cret]\n",
                "auth.password must be a string",
            ),
            (
                "    password: {a: canary-s3cret}\n",
                "auth.password must be a string",
            ),
        ];
        for (line, expected) in cases {
            let text = format!(
                "clouds:\n  local:\n    auth:\n      auth_url: http://127.0.0.1:1/v3\n      username: u\n  {line}"
            );
            let err = parse_clouds_yaml(&text, "local", path).expect_err(line);
            let shown = format!("{err} {err:?}");
            for secret in ["canary-s3cret", "987654321"] {
                assert!(!shown.contains(secret), "{line:?} leaks: {shown}");
            }
            assert!(shown.contains(expected), "{line:?}: {shown}");
        }
    }

    #[test]
    fn envvars_names_the_environment_cloud() {
        let env = FakeEnv(
            HashMap::from([("OS_AUTH_URL", "http://k/v3".to_owned())]),
            None,
        );
        assert_eq!(
            choose_cloud(Some("envvars"), &env).unwrap(),
            CloudChoice::Environment
        );
        let none = FakeEnv(HashMap::new(), None);
        let err = choose_cloud(Some("envvars"), &none).unwrap_err();
        assert!(err.to_string().contains("OS_AUTH_URL is not set"), "{err}");
    }
}
