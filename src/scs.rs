//! The Sovereign Cloud Stack image-metadata standard (SCS-0102 v1): the properties every
//! published image carries, the values the standard allows, and the pipeline's defaults.
//!
//! Defaults come from the pipeline's `image_metadata:` and can be overridden per profile;
//! both are validated at load time against the standard's sets.

use serde::Serialize;

/// `os_purpose` values the standard allows.
pub const OS_PURPOSES: &[&str] = &[
    "generic",
    "minimal",
    "capinode",
    "gpu",
    "network",
    "appliance",
    "custom",
];
/// `replace_frequency` values the standard allows.
pub const REPLACE_FREQUENCIES: &[&str] = &[
    "yearly",
    "quarterly",
    "monthly",
    "weekly",
    "daily",
    "critical_bug",
    "never",
];
/// The oldest an image may be under its `replace_frequency`: `None` for `critical_bug` and
/// `never`, which promise no schedule. A month counts 31 days and a quarter 92, the longest
/// each can be, so a promise kept to the day is never reported stale.
pub fn max_age(replace_frequency: &str) -> Option<std::time::Duration> {
    const DAY: u64 = 24 * 60 * 60;
    let days = match replace_frequency {
        "yearly" => 366,
        "quarterly" => 92,
        "monthly" => 31,
        "weekly" => 7,
        "daily" => 1,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(days * DAY))
}

/// `min_ram` (MiB) when a profile says nothing: the standard makes it mandatory.
pub const DEFAULT_MIN_RAM: u64 = 1024;

/// The image metadata of a profile, every field optional: a pipeline's defaults or a
/// profile's overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Metadata {
    /// `os_purpose`.
    pub os_purpose: Option<String>,
    /// `replace_frequency`.
    pub replace_frequency: Option<String>,
    /// `provided_until`: `YYYY-MM-DD`, `none` or `notice`.
    pub provided_until: Option<String>,
    /// `hotfix_hours`.
    pub hotfix_hours: Option<u32>,
    /// `image_source`: an http(s) URL of the flake's source, or `private`.
    pub image_source: Option<String>,
    /// `image_original_user`: the default login user, or `none`.
    pub image_original_user: Option<String>,
    /// `patchlevel`.
    pub patchlevel: Option<String>,
    /// The image runs the QEMU guest agent (`hw_qemu_guest_agent`, `os_require_quiesce`).
    pub guest_agent: Option<bool>,
}

impl Metadata {
    /// These values, with `base` filling what they leave unset.
    pub fn over(&self, base: &Metadata) -> Metadata {
        Metadata {
            os_purpose: self.os_purpose.clone().or_else(|| base.os_purpose.clone()),
            replace_frequency: self
                .replace_frequency
                .clone()
                .or_else(|| base.replace_frequency.clone()),
            provided_until: self
                .provided_until
                .clone()
                .or_else(|| base.provided_until.clone()),
            hotfix_hours: self.hotfix_hours.or(base.hotfix_hours),
            image_source: self
                .image_source
                .clone()
                .or_else(|| base.image_source.clone()),
            image_original_user: self
                .image_original_user
                .clone()
                .or_else(|| base.image_original_user.clone()),
            patchlevel: self.patchlevel.clone().or_else(|| base.patchlevel.clone()),
            guest_agent: self.guest_agent.or(base.guest_agent),
        }
    }

    /// The pipeline's own defaults: promises it can keep whatever the platform does.
    pub fn defaults() -> Metadata {
        Metadata {
            os_purpose: Some("generic".into()),
            // The pipeline republishes on every change; the only promise it makes on its own
            // is a replacement for critical issues.
            replace_frequency: Some("critical_bug".into()),
            provided_until: Some("none".into()),
            hotfix_hours: None,
            image_source: Some("private".into()),
            // NixOS images have no default login user unless a profile declares one.
            image_original_user: Some("none".into()),
            patchlevel: None,
            guest_agent: Some(false),
        }
    }
}

/// Why a value is not one the standard allows (the message names the allowed ones).
pub fn check_os_purpose(value: &str) -> Result<(), String> {
    one_of("os_purpose", value, OS_PURPOSES)
}

/// See [`check_os_purpose`].
pub fn check_replace_frequency(value: &str) -> Result<(), String> {
    one_of("replace_frequency", value, REPLACE_FREQUENCIES)
}

fn one_of(key: &str, value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "{key} `{value}` is not allowed by SCS-0102 (allowed: {})",
            allowed.join(", ")
        ))
    }
}

/// `provided_until`: `YYYY-MM-DD`, `none` or `notice`.
pub fn check_provided_until(value: &str) -> Result<(), String> {
    if matches!(value, "none" | "notice") || is_date(value) {
        Ok(())
    } else {
        Err(format!(
            "provided_until `{value}` must be a date YYYY-MM-DD, `none` or `notice` (SCS-0102)"
        ))
    }
}

fn is_date(value: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    value.len() == 10 && time::Date::parse(value, format).is_ok()
}

/// `image_source`: an http(s) URL, or `private`.
pub fn check_image_source(value: &str) -> Result<(), String> {
    let url = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    if value == "private"
        || url.is_some_and(|rest| !rest.is_empty() && !rest.contains(char::is_whitespace))
    {
        Ok(())
    } else {
        Err(format!(
            "image_source `{value}` must be an http(s) URL where the image's source can be had, \
             or `private` (SCS-0102)"
        ))
    }
}

/// `image_original_user`: a login name, or `none`.
pub fn check_original_user(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 32
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "image_original_user `{value}` must be a login name (lower-case letters, digits, \
             `_`, `-`) or `none` (SCS-0102)"
        ))
    }
}

/// The SCS properties of an image with `metadata` (defaults applied), built at UTC time
/// `built`, whose profile says `description`, kept `keep` generations deep.
pub fn properties(
    metadata: &Metadata,
    description: &str,
    built: time::OffsetDateTime,
    keep: u32,
) -> Vec<(&'static str, String)> {
    let full = metadata.over(&Metadata::defaults());
    let utc = built.to_offset(time::UtcOffset::UTC);
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
    let mut out = vec![
        ("os_purpose", full.os_purpose.unwrap_or_default()),
        ("hypervisor_type", "qemu".to_string()),
        ("hw_disk_bus", "scsi".to_string()),
        ("hw_scsi_model", "virtio-scsi".to_string()),
        ("hw_rng_model", "virtio".to_string()),
        ("image_build_date", utc.format(&format).unwrap_or_default()),
        (
            "image_original_user",
            full.image_original_user.unwrap_or_default(),
        ),
        ("image_source", full.image_source.unwrap_or_default()),
        ("image_description", description.to_string()),
        (
            "replace_frequency",
            full.replace_frequency.unwrap_or_default(),
        ),
        ("provided_until", full.provided_until.unwrap_or_default()),
        ("uuid_validity", format!("last-{}", keep.max(1))),
    ];
    if let Some(hours) = full.hotfix_hours {
        out.push(("hotfix_hours", hours.to_string()));
    }
    if let Some(level) = full.patchlevel {
        out.push(("patchlevel", level));
    }
    if full.guest_agent == Some(true) {
        out.push(("hw_qemu_guest_agent", "yes".to_string()));
        out.push(("os_require_quiesce", "yes".to_string()));
    }
    out
}

/// Every key [`properties`] may set.
pub const KEYS: &[&str] = &[
    "os_purpose",
    "hypervisor_type",
    "hw_disk_bus",
    "hw_scsi_model",
    "hw_rng_model",
    "image_build_date",
    "image_original_user",
    "image_source",
    "image_description",
    "replace_frequency",
    "provided_until",
    "uuid_validity",
    "hotfix_hours",
    "patchlevel",
    "hw_qemu_guest_agent",
    "os_require_quiesce",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_outside_the_standard_are_refused_naming_the_allowed_ones() {
        check_os_purpose("network").unwrap();
        let err = check_os_purpose("k8snode").unwrap_err();
        assert!(err.contains("allowed: generic, minimal, capinode"), "{err}");
        check_replace_frequency("critical_bug").unwrap();
        assert_eq!(max_age("weekly").map(|d| d.as_secs()), Some(7 * 86400));
        assert_eq!(max_age("daily").map(|d| d.as_secs()), Some(86400));
        assert!(max_age("critical_bug").is_none() && max_age("never").is_none());
        assert!(REPLACE_FREQUENCIES
            .iter()
            .all(|f| max_age(f).is_some() || matches!(*f, "critical_bug" | "never")));
        assert!(check_replace_frequency("hourly").is_err());
        for ok in ["2027-06-30", "none", "notice"] {
            check_provided_until(ok).unwrap();
        }
        for bad in ["2027-13-01", "forever", "last-3", "27-06-30"] {
            assert!(check_provided_until(bad).is_err(), "{bad}");
        }
        check_image_source("https://git.example.org/hephaestus").unwrap();
        check_image_source("private").unwrap();
        assert!(check_image_source("git.example.org").is_err());
        check_original_user("none").unwrap();
        check_original_user("nixos").unwrap();
        assert!(check_original_user("root;id").is_err());
    }

    #[test]
    fn profile_values_win_over_pipeline_defaults_and_keep_sets_uuid_validity() {
        let pipeline = Metadata {
            replace_frequency: Some("monthly".into()),
            hotfix_hours: Some(48),
            ..Metadata::default()
        };
        let profile = Metadata {
            os_purpose: Some("network".into()),
            guest_agent: Some(true),
            ..Metadata::default()
        };
        let at = time::macros::datetime!(2026-12-02 13:05 +01:00);
        let props = properties(&profile.over(&pipeline), "VPN server", at, 5);
        let get = |k: &str| {
            props
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("os_purpose"), Some("network"));
        assert_eq!(get("replace_frequency"), Some("monthly"));
        assert_eq!(get("hotfix_hours"), Some("48"));
        assert_eq!(get("uuid_validity"), Some("last-5"));
        assert_eq!(get("image_build_date"), Some("2026-12-02 12:05"));
        assert_eq!(get("image_source"), Some("private"));
        assert_eq!(get("hw_qemu_guest_agent"), Some("yes"));
        assert_eq!(get("os_require_quiesce"), Some("yes"));
        assert!(props.iter().all(|(k, _)| KEYS.contains(k)));
    }
}
