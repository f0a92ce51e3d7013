//! Choosing a cloud and opening an authenticated osauth session on it, from `clouds.yaml`
//! (`--cloud`, `OS_CLOUD`, `OS_CLIENT_CONFIG_FILE`) or from `OS_*` variables.
//!
//! osauth 0.5 only looks for `clouds.yaml` in the current directory, `~/.config/openstack`
//! and `/etc/openstack`, ignores `OS_CLIENT_CONFIG_FILE`, and builds its HTTP client from
//! `cacert` alone (no `verify: false`, no client certificate, no system trust store). So the
//! file is found and read here, the TLS keys make the client ([`super::tls`]), the `auth`
//! mapping makes osauth's identity (password, application credential or token, as osauth's
//! own loader maps them), and osauth does the authentication, token refresh and catalog
//! lookup. As openstacksdk does, the entry is laid over its vendor profile (`profile:`, from
//! `clouds-public.yaml`), `secure.yaml`'s entry of the same name is deep-merged over it
//! (`OS_CLIENT_SECURE_FILE`, else `./`, `~/.config/openstack/`, `/etc/openstack/`), and
//! `OS_REGION_NAME` / `OS_INTERFACE` / `OS_CACERT` / `OS_CERT` / `OS_KEY` fill what the
//! entry leaves open.
//!
//! A cloud entry may set openstacksdk's `image_endpoint_override`: Glance is then reached at
//! that URL instead of the catalog's image endpoint, while the token still comes from
//! Keystone. It serves clouds whose catalog names an address the client cannot reach, and
//! the fault-injection tests, which put a proxy in front of Glance. The value is checked
//! first, so that a bad one is a configuration error naming the file and the cloud.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use osauth::CloudConfig;

use super::api::Glance;
use super::error::Error;
use super::tls::{self, Tls};

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

/// A cloud entry, read: how to reach it and who to be.
pub struct Loaded {
    /// Who the session authenticates as.
    pub identity: Identity,
    /// openstacksdk's `api_timeout` (seconds): how long a call may go without anything
    /// moving before it is abandoned.
    pub api_timeout: Option<std::time::Duration>,
    /// The TLS settings the HTTP client is built with.
    pub tls: Tls,
    /// The catalog region to use (`region_name`), if the entry names one.
    pub region: Option<String>,
    /// The catalog interface to use (`interface`), if the entry names one.
    pub interface: Option<osauth::InterfaceType>,
    /// `image_endpoint_override`, when set.
    pub image_endpoint: Option<reqwest::Url>,
    /// Keystone's URL (`auth.auth_url`).
    pub auth_url: Option<reqwest::Url>,
}

impl std::fmt::Debug for Loaded {
    // The identity holds a secret: only its kind is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("identity", &self.identity.kind())
            .field("api_timeout", &self.api_timeout)
            .field("tls", &self.tls)
            .field("region", &self.region)
            .field("interface", &self.interface)
            .field("image_endpoint", &self.image_endpoint)
            .field("auth_url", &self.auth_url)
            .finish()
    }
}

/// osauth's identity of a cloud entry, one per supported `auth_type`.
pub enum Identity {
    /// `password` / `v3password` (the default).
    Password(osauth::identity::Password),
    /// `v3applicationcredential`.
    ApplicationCredential(osauth::identity::ApplicationCredential),
    /// `token` / `v3token` (the default when `auth.token` is set).
    Token(osauth::identity::Token),
}

impl Identity {
    /// The auth_type, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Password(_) => "password",
            Identity::ApplicationCredential(_) => "v3applicationcredential",
            Identity::Token(_) => "v3token",
        }
    }

    /// Authenticates with `client`: a session holding the token.
    async fn session(self, client: reqwest::Client) -> Result<osauth::Session, osauth::Error> {
        match self {
            Identity::Password(id) => osauth::Session::new_with_client(client, id).await,
            Identity::ApplicationCredential(id) => {
                osauth::Session::new_with_client(client, id).await
            }
            Identity::Token(id) => osauth::Session::new_with_client(client, id).await,
        }
    }
}

/// The identity of an entry's `auth` mapping and `auth_type`, mapped as osauth's own
/// clouds.yaml loader maps them (same keys, same defaults).
fn identity_of(entry: &serde_json::Value, name: &str, path: &Path) -> Result<Identity, Error> {
    use osauth::common::IdOrName;
    use osauth::identity::{ApplicationCredential, Password, Scope, Token};
    let auth = entry.get("auth");
    let get = |key: &str| {
        auth.and_then(|a| a.get(key))
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let auth_type = match entry.get("auth_type").and_then(serde_json::Value::as_str) {
        Some(t) => t.to_owned(),
        None if get("token").is_some() => "v3token".to_owned(),
        None => "password".to_owned(),
    };
    let config = |what: String| Error::Config {
        message: format!("{}: cloud {name}: {what}", path.display()),
    };
    let need = |key: &str| {
        get(key).ok_or_else(|| config(format!("auth.{key} is missing (auth_type {auth_type})")))
    };
    // osauth's own messages name the problem (a bad auth_url), never a value given.
    let invalid = |e: osauth::Error| config(e.to_string());
    let auth_url = need("auth_url")?;
    let scope = get("project_id")
        .map(IdOrName::Id)
        .or_else(|| get("project_name").map(IdOrName::Name))
        .map(|project| Scope::Project {
            project,
            domain: Some(
                get("project_domain_id")
                    .map(IdOrName::Id)
                    .or_else(|| get("project_domain_name").map(IdOrName::Name))
                    .unwrap_or_else(|| IdOrName::from_name("Default")),
            ),
        });
    Ok(match auth_type.as_str() {
        "password" | "v3password" => {
            let mut id = Password::new(
                &auth_url,
                need("username")?,
                need("password")?,
                get("user_domain_name").unwrap_or_else(|| "Default".to_owned()),
            )
            .map_err(invalid)?;
            if let Some(scope) = scope {
                id.set_scope(scope);
            }
            Identity::Password(id)
        }
        "v3applicationcredential" => {
            let secret = need("application_credential_secret")?;
            let id = match (
                get("application_credential_id"),
                get("application_credential_name"),
            ) {
                (Some(id), _) => ApplicationCredential::new(&auth_url, id, secret),
                (None, Some(cred_name)) => ApplicationCredential::with_user_id(
                    &auth_url,
                    cred_name,
                    secret,
                    get("user_id").ok_or_else(|| {
                        config(
                            "an application credential given by name needs auth.user_id".to_owned(),
                        )
                    })?,
                ),
                (None, None) => {
                    return Err(config(
                        "auth.application_credential_id (or _name with user_id) is missing"
                            .to_owned(),
                    ))
                }
            }
            .map_err(invalid)?;
            Identity::ApplicationCredential(id)
        }
        "token" | "v3token" => {
            let mut id = Token::new(&auth_url, need("token")?).map_err(invalid)?;
            if let Some(scope) = scope {
                id.set_scope(scope);
            }
            Identity::Token(id)
        }
        other => {
            return Err(config(format!(
                "auth_type `{other}` is not supported (use password, \
                 v3applicationcredential or v3token)"
            )))
        }
    })
}

/// The clouds.yaml key (openstacksdk's) of the API timeout, in seconds.
pub const API_TIMEOUT: &str = "api_timeout";

/// Parses the text of a `clouds.yaml` and reads its entry `name`. `path` only names the file
/// in messages. Messages never quote values (they hold passwords).
pub fn parse_clouds_yaml(text: &str, name: &str, path: &Path) -> Result<Loaded, Error> {
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
    let tls = match entry.as_object_mut() {
        Some(map) => Tls::take_from(map).map_err(|e| Error::Config {
            message: format!("{}: cloud {name}: {e}", path.display()),
        })?,
        None => Tls::default(),
    };
    // osauth's reading of the entry is kept as a check of its shape (the types of the keys
    // osauth knows).
    // serde's messages quote the offending value, which may be a secret: only its kind is told.
    let _: CloudConfig = serde_json::from_value(entry.clone()).map_err(|e| Error::Config {
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
    let text = |key: &str| {
        entry
            .get(key)
            .and_then(serde_json::Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let interface = match text("interface") {
        None => None,
        Some(i) => Some(
            i.parse::<osauth::InterfaceType>()
                .map_err(|_| Error::Config {
                    message: format!(
                        "{}: cloud {name}: interface `{i}` is not public, internal or admin",
                        path.display()
                    ),
                })?,
        ),
    };
    Ok(Loaded {
        identity: identity_of(&entry, name, path)?,
        api_timeout,
        tls,
        region: text("region_name"),
        interface,
        // Checked by check_image_endpoint_override above.
        image_endpoint: text(IMAGE_ENDPOINT_OVERRIDE).and_then(|u| reqwest::Url::parse(&u).ok()),
        auth_url: entry
            .pointer("/auth/auth_url")
            .and_then(serde_json::Value::as_str)
            .and_then(|u| reqwest::Url::parse(u).ok()),
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
            // A region, interface or TLS file the entry leaves open comes from the
            // environment (as `openstack --os-cloud` reads them).
            for (key, variable) in [
                ("region_name", "OS_REGION_NAME"),
                ("interface", "OS_INTERFACE"),
                ("cacert", "OS_CACERT"),
                ("cert", "OS_CERT"),
                ("key", "OS_KEY"),
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
        CloudChoice::Environment => {
            let config = CloudConfig::from_env().map_err(|e| Error::Config {
                message: format!("the OS_* environment does not describe a cloud: {e}"),
            })?;
            // osauth reads every OS_* variable it knows into its config; as an entry, it is
            // read as a clouds.yaml entry is. OS_CERT / OS_KEY are not among them.
            let mut entry = serde_json::to_value(&config).map_err(|_| Error::Config {
                message: "the OS_* environment does not describe a cloud".to_owned(),
            })?;
            for (key, variable) in [("cert", "OS_CERT"), ("key", "OS_KEY")] {
                if let (Some(obj), Some(value)) = (entry.as_object_mut(), env.var(variable)) {
                    obj.entry(key).or_insert(serde_json::Value::String(value));
                }
            }
            finish_entry(entry, "envvars", Path::new("the OS_* environment"))
        }
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
    if !loaded.tls.verify {
        // openstacksdk warns on every request; once per connection is enough to be seen.
        tracing::warn!(
            "cloud {label}: TLS certificate verification is off (verify: false / insecure): \
             anyone on the network path can read the credentials and replace the images"
        );
    }
    let client = loaded.tls.client().map_err(|e| Error::Config {
        message: format!("cloud {label}: {}", crate::error::error_chain(&e)),
    })?;
    let auth_url = loaded.auth_url.clone();
    let mut session = match loaded.identity.session(client.clone()).await {
        Ok(session) => session,
        Err(source) => {
            return Err(diagnose(&client, &label, auth_url.as_ref())
                .await
                .unwrap_or(Error::Connect {
                    cloud: label,
                    source,
                }))
        }
    };
    let wanted = format!(
        "region {}, interface {}",
        loaded.region.as_deref().unwrap_or("(any)"),
        loaded
            .interface
            .map(|i| i.to_string())
            .unwrap_or_else(|| "public".to_owned())
    );
    if let Some(region) = loaded.region {
        session.endpoint_filters_mut().region = Some(region);
    }
    if let Some(interface) = loaded.interface {
        session.set_endpoint_interface(interface);
    }
    if let Some(url) = loaded.image_endpoint {
        session.set_endpoint_override(osauth::services::IMAGE, url);
    }
    let endpoint = match session
        .get_endpoint(osauth::services::IMAGE, std::iter::empty::<&str>())
        .await
    {
        Ok(endpoint) => endpoint,
        Err(source) if source.kind() == osauth::ErrorKind::EndpointNotFound => {
            return Err(Error::Config {
                message: format!(
                    "cloud {label}: Keystone's catalog lists no image endpoint for {wanted}; \
                     fix: set region_name / interface of the cloud (or OS_REGION_NAME / \
                     OS_INTERFACE) to ones the catalog lists (`openstack endpoint list \
                     --service image`)"
                ),
            })
        }
        Err(source) => {
            return Err(Error::Connect {
                cloud: label,
                source,
            })
        }
    };
    tracing::debug!(cloud = %label, endpoint = %endpoint, "image endpoint");
    let glance = Glance::new(label, session, &endpoint)?;
    Ok(match loaded.api_timeout {
        Some(t) => glance.with_api_timeout(t),
        None => glance,
    })
}

/// Why a session could not be opened, when TLS is the reason: osauth keeps only the text of
/// reqwest's error, which does not say. One unauthenticated GET of the same URL with the
/// same client tells.
async fn diagnose(
    client: &reqwest::Client,
    label: &str,
    url: Option<&reqwest::Url>,
) -> Option<Error> {
    let url = url?;
    if url.scheme() != "https" {
        return None;
    }
    let err = client.get(url.clone()).send().await.err()?;
    refusal_error(&err, label, url)
}

/// The configuration error of a refused TLS handshake with `url`, naming the cloud, the host
/// and the fix.
fn refusal_error(err: &reqwest::Error, label: &str, url: &reqwest::Url) -> Option<Error> {
    let refusal = tls::refusal(err)?;
    let host = match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.to_string(),
    };
    let message = match refusal {
        tls::Refusal::Untrusted => format!(
            "cloud {label}: the TLS certificate of {host} is not signed by a CA this machine \
             trusts; fix: set `cacert:` of the cloud in clouds.yaml (or OS_CACERT) to the CA's \
             PEM file, or add the CA to the system trust store (or SSL_CERT_FILE)"
        ),
        tls::Refusal::WrongName => format!(
            "cloud {label}: the TLS certificate of {host} is not valid for the name `{}`; fix: \
             reach the cloud by a name the certificate holds (auth_url, or the catalog's \
             endpoints), or have the certificate reissued",
            url.host_str().unwrap_or_default()
        ),
        tls::Refusal::Other(why) => format!(
            "cloud {label}: the TLS handshake with {host} failed: {why}; fix: check the \
             server's certificate and the cloud's `cacert:`"
        ),
    };
    Some(Error::Config { message })
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
    fn image_endpoint_override_is_kept_and_a_bad_one_is_named() {
        let path = Path::new("clouds.yaml");
        let with = |value: &str| {
            CLOUDS.replace(
                "    identity_api_version: 3\n",
                &format!("    identity_api_version: 3\n    image_endpoint_override: {value}\n"),
            )
        };
        let loaded = parse_clouds_yaml(&with("http://127.0.0.1:40123"), "local", path).unwrap();
        assert_eq!(
            loaded.image_endpoint.as_ref().map(reqwest::Url::as_str),
            Some("http://127.0.0.1:40123/")
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

    #[test]
    fn each_auth_type_is_read_and_a_missing_or_unknown_one_is_named_without_its_value() {
        let path = Path::new("clouds.yaml");
        let loaded = parse_clouds_yaml(CLOUDS, "local", path).unwrap();
        assert_eq!(loaded.identity.kind(), "password");
        assert_eq!(loaded.region.as_deref(), Some("RegionOne"));
        assert!(!format!("{loaded:?}").contains("s3cret"), "{loaded:?}");
        let with = |extra: &str, auth: &str| {
            format!("clouds:\n  c:\n{extra}    auth:\n      auth_url: https://k.example/v3\n{auth}")
        };
        let app = with(
            "    auth_type: v3applicationcredential\n",
            "      application_credential_id: abc\n      application_credential_secret: s3cret\n",
        );
        let loaded = parse_clouds_yaml(&app, "c", path).unwrap();
        assert_eq!(loaded.identity.kind(), "v3applicationcredential");
        let token = with("", "      token: s3cret\n");
        assert_eq!(
            parse_clouds_yaml(&token, "c", path)
                .unwrap()
                .identity
                .kind(),
            "v3token"
        );
        for (text, says) in [
            (
                with("", "      username: u\n"),
                "auth.password is missing (auth_type password)",
            ),
            (
                with(
                    "    auth_type: v3applicationcredential\n",
                    "      application_credential_name: ci-cred\n      application_credential_secret: s3cret\n",
                ),
                "needs auth.user_id",
            ),
            (
                with("    auth_type: v2password\n", "      password: s3cret\n"),
                "auth_type `v2password` is not supported",
            ),
            (
                with("    interface: outside\n", "      token: s3cret\n"),
                "interface `outside` is not public, internal or admin",
            ),
        ] {
            let err = parse_clouds_yaml(&text, "c", path).unwrap_err().to_string();
            assert!(err.contains("clouds.yaml: cloud c: "), "{err}");
            assert!(err.contains(says), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }
}
