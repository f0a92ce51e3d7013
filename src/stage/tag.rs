//! `tag`: every Glance property and tag of an image, derived from its profile, its build and
//! its digests (DESIGN §3). Firmware keys come from `boot` alone and cannot be overridden.

use super::Evaluated;
use crate::firmware::Boot;
use serde::Serialize;
use std::collections::BTreeMap;

/// Facts from the build that properties are made of.
#[derive(Debug, Clone)]
pub struct BuildFacts<'a> {
    /// The output's store path.
    pub store_path: &'a str,
    /// NixOS release label from `image-info.json` (e.g. `25.11`).
    pub nixos_label: &'a str,
    /// `{UTC yyyymmddHHMM}-{first 8 characters of the store path hash}`.
    pub generation: &'a str,
}

/// Digests that openstacksdk's conventional properties carry.
#[derive(Debug, Clone)]
pub struct DigestFacts<'a> {
    /// Hex sha256 of the image file.
    pub sha256: &'a str,
    /// Hex md5 of the image file.
    pub md5: &'a str,
}

/// The properties and tags of one image.
#[derive(Debug, Clone, Serialize)]
pub struct Tagging {
    /// Properties with known values.
    pub properties: BTreeMap<String, String>,
    /// Properties whose value a later stage supplies: key → where it comes from.
    pub pending: BTreeMap<String, String>,
    /// Tags (the lifecycle tag — `candidate`, then `current` — is the upload's).
    pub tags: Vec<String>,
}

/// The firmware properties of a boot mode: the platform's rule, in one place.
pub fn firmware_properties(boot: Boot) -> Vec<(&'static str, &'static str)> {
    match boot {
        Boot::Uefi => vec![("hw_firmware_type", "uefi"), ("hw_machine_type", "q35")],
        Boot::Bios => vec![("hw_firmware_type", "bios")],
    }
}

/// `{UTC yyyymmddHHMM}-{first 8 characters of the store path's hash}`.
pub fn generation(at: time::OffsetDateTime, store_path: &str) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    let base = store_path.rsplit('/').next().unwrap_or(store_path);
    let hash: String = base.chars().take(8).collect();
    format!(
        "{:04}{:02}{:02}{:02}{:02}-{hash}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute()
    )
}

/// Compute the tagging of `ev` for `pipeline`, with whatever later facts are already known.
pub fn tag(
    ev: &Evaluated,
    pipeline: &str,
    image_name: &str,
    build: Option<&BuildFacts<'_>>,
    digests: Option<&DigestFacts<'_>>,
) -> Tagging {
    let mut properties = BTreeMap::new();
    let mut pending = BTreeMap::new();
    // Profile extras first, so that nothing computed below can be shadowed by them
    // (validation refuses such keys; this order makes it hold even if it did not).
    for (k, v) in &ev.extra_properties {
        properties.insert(k.clone(), v.clone());
    }
    let mut set = |k: &str, v: &str| {
        properties.insert(k.to_string(), v.to_string());
    };
    for (k, v) in firmware_properties(ev.boot) {
        set(k, v);
    }
    set("os_type", "linux");
    set("os_distro", "nixos");
    set("architecture", "x86_64");
    set("hephaestus_profile", &ev.profile);
    set("hephaestus_role", &ev.role);
    set("hephaestus_pipeline", pipeline);
    set(
        "owner_specified.openstack.object",
        &format!("images/{image_name}"),
    );
    match build {
        Some(b) => {
            set("os_version", b.nixos_label);
            set("hephaestus_store_path", b.store_path);
            set("hephaestus_generation", b.generation);
        }
        None => {
            pending.insert(
                "os_version".into(),
                "NixOS release label of the build".into(),
            );
            pending.insert(
                "hephaestus_store_path".into(),
                "store path of the build".into(),
            );
            pending.insert(
                "hephaestus_generation".into(),
                "UTC time of the run + first 8 characters of the store path hash".into(),
            );
        }
    }
    match digests {
        Some(d) => {
            set("owner_specified.openstack.sha256", d.sha256);
            set("owner_specified.openstack.md5", d.md5);
        }
        None => {
            pending.insert(
                "owner_specified.openstack.sha256".into(),
                "sha256 of the image file (verify)".into(),
            );
            pending.insert(
                "owner_specified.openstack.md5".into(),
                "md5 of the image file (verify)".into(),
            );
        }
    }
    let mut tags = vec!["hephaestus".to_string(), format!("profile:{}", ev.profile)];
    for t in &ev.extra_tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Tagging {
        properties,
        pending,
        tags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evaluated(boot: Boot) -> Evaluated {
        Evaluated {
            profile: "lucy".into(),
            role: "kubernetes-control-plane".into(),
            boot,
            flake: "path:/x".into(),
            attribute: "images.lucy".into(),
            installable: "path:/x#images.lucy".into(),
            min_disk: None,
            min_ram: None,
            extra_properties: BTreeMap::from([("hw_qemu_guest_agent".into(), "yes".into())]),
            extra_tags: vec!["kubernetes".into()],
        }
    }

    #[test]
    fn uefi_images_get_uefi_and_q35() {
        let t = tag(
            &evaluated(Boot::Uefi),
            "publish-all",
            "hephaestus-lucy",
            None,
            None,
        );
        assert_eq!(t.properties["hw_firmware_type"], "uefi");
        assert_eq!(t.properties["hw_machine_type"], "q35");
        assert_eq!(t.properties["hw_qemu_guest_agent"], "yes");
        assert_eq!(t.tags, ["hephaestus", "profile:lucy", "kubernetes"]);
    }

    #[test]
    fn bios_images_get_bios_and_no_machine_type() {
        let t = tag(
            &evaluated(Boot::Bios),
            "publish-all",
            "hephaestus-lucy",
            None,
            None,
        );
        assert_eq!(t.properties["hw_firmware_type"], "bios");
        assert!(!t.properties.contains_key("hw_machine_type"));
    }

    #[test]
    fn profile_properties_never_override_firmware() {
        let mut ev = evaluated(Boot::Uefi);
        ev.extra_properties
            .insert("hw_firmware_type".into(), "bios".into());
        let t = tag(&ev, "p", "n", None, None);
        assert_eq!(t.properties["hw_firmware_type"], "uefi");
    }

    #[test]
    fn build_facts_fill_pending_properties() {
        let ev = evaluated(Boot::Uefi);
        let without = tag(&ev, "p", "n", None, None);
        assert!(without.pending.contains_key("hephaestus_store_path"));
        let facts = BuildFacts {
            store_path: "/nix/store/abcdefghijkl-image",
            nixos_label: "25.11",
            generation: "202611261200-abcdefgh",
        };
        let digests = DigestFacts {
            sha256: "s",
            md5: "m",
        };
        let with = tag(&ev, "p", "n", Some(&facts), Some(&digests));
        assert!(with.pending.is_empty());
        assert_eq!(with.properties["os_version"], "25.11");
        assert_eq!(with.properties["owner_specified.openstack.md5"], "m");
    }

    #[test]
    fn generation_is_utc_minute_and_hash_prefix() {
        let at = time::macros::datetime!(2026-11-26 13:05:59 +02:00);
        assert_eq!(
            generation(at, "/nix/store/0123456789abcdef-x"),
            "202611261105-01234567"
        );
    }
}
