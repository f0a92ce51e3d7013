//! `tag`: every Glance property and tag of an image, derived from its profile and its build
//! (DESIGN §3). Firmware keys come from `boot` alone and cannot be overridden; the key names
//! are the image family's ([`crate::lifecycle::keys`]).

use super::{slot, Artifact, Built, Context, Evaluated, Kind, Outcome, Slot};
use crate::firmware::Boot;
use crate::lifecycle::{base_tags, keys};
use serde::Serialize;
use std::collections::BTreeMap;

/// The properties and tags of one image.
#[derive(Debug, Clone, Serialize)]
pub struct Properties {
    /// The firmware the image is tagged with (the source of the firmware properties).
    pub boot: Boot,
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
        Boot::Uefi => vec![(keys::FIRMWARE_TYPE, "uefi"), (keys::MACHINE_TYPE, "q35")],
        Boot::Bios => vec![(keys::FIRMWARE_TYPE, "bios")],
    }
}

/// openstacksdk's conventional hash properties, set by the upload once Glance's hashes agree.
pub use crate::lifecycle::publish::digest_properties;

/// When an image was built and how deep its family is kept: what its SCS properties need.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// When the run that built it began (SCS `image_build_date`).
    pub built_at: time::OffsetDateTime,
    /// Generations kept (SCS `uuid_validity`).
    pub keep: u32,
}

/// The properties of `ev` for `pipeline`, with the build's facts when it is built.
pub fn tag(
    ev: &Evaluated,
    pipeline: &str,
    image_name: &str,
    build: Option<&Built>,
    facts: Facts,
) -> Properties {
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
    set(keys::OS_TYPE, "linux");
    set(keys::OS_DISTRO, "nixos");
    set(keys::ARCHITECTURE, "x86_64");
    set(keys::PROFILE, &ev.profile);
    set(keys::ROLE, &ev.role);
    set(keys::PIPELINE, pipeline);
    set(keys::SDK_OBJECT, &format!("images/{image_name}"));
    for (k, v) in crate::scs::properties(&ev.metadata, &ev.description, facts.built_at, facts.keep)
    {
        set(k, &v);
    }
    match build {
        Some(b) => {
            // An image-info without a release label gets no os_version, rather than an
            // empty one that would read as a version.
            if let Some(label) = &b.image.label {
                set(keys::OS_VERSION, label);
            }
            set(keys::STORE_PATH, b.store_path.as_str());
            set(keys::GENERATION, &b.generation);
        }
        None => {
            pending.insert(
                keys::OS_VERSION.into(),
                "NixOS release label of the build".into(),
            );
            pending.insert(keys::STORE_PATH.into(), "store path of the build".into());
            pending.insert(
                keys::GENERATION.into(),
                "UTC time of the run + first 8 characters of the store path hash".into(),
            );
        }
    }
    pending.insert(
        keys::SDK_SHA256.into(),
        "sha256 of the image file (computed while it uploads)".into(),
    );
    pending.insert(
        keys::SDK_MD5.into(),
        "md5 of the image file (computed while it uploads)".into(),
    );
    let mut tags = base_tags(&ev.profile);
    for t in &ev.extra_tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    Properties {
        boot: ev.boot,
        properties,
        pending,
        tags,
    }
}

/// The stage: fills `properties`.
pub fn run(artifact: &mut Artifact, ctx: &Context<'_>) -> Result<Outcome, super::Error> {
    let ev = slot(&artifact.evaluated, Kind::Tag, Slot::Evaluated)?;
    // A dry run builds nothing: the build's facts are then shown as pending.
    let built = if ctx.dry_run {
        artifact.build.as_ref()
    } else {
        Some(slot(&artifact.build, Kind::Tag, Slot::Build)?)
    };
    let facts = Facts {
        built_at: ctx.started_at,
        keep: ctx.keep,
    };
    let t = tag(ev, ctx.pipeline, &ctx.image_name(&ev.profile), built, facts);
    let note = format!("{} properties, {} tags", t.properties.len(), t.tags.len());
    artifact.properties = Some(t);
    Ok(Outcome::Done(Some(note)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digests;
    use crate::lifecycle::{reserved_key, ReservedKey};

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
            extra_properties: BTreeMap::from([("hw_watchdog_action".into(), "reset".into())]),
            extra_tags: vec!["kubernetes".into()],
            description: "a node".into(),
            metadata: crate::scs::Metadata {
                guest_agent: Some(true),
                ..crate::scs::Metadata::default()
            },
        }
    }

    fn facts() -> Facts {
        Facts {
            built_at: time::macros::datetime!(2026-12-02 12:00 UTC),
            keep: 3,
        }
    }

    #[test]
    fn uefi_images_get_uefi_and_q35() {
        let t = tag(
            &evaluated(Boot::Uefi),
            "publish-all",
            "hephaestus-lucy",
            None,
            facts(),
        );
        assert_eq!(t.properties["hw_firmware_type"], "uefi");
        assert_eq!(t.properties["hw_machine_type"], "q35");
        assert_eq!(t.properties["hw_qemu_guest_agent"], "yes");
        assert_eq!(t.tags, ["hephaestus", "profile:lucy", "kubernetes"]);
        assert_eq!(t.boot, Boot::Uefi);
    }

    #[test]
    fn bios_images_get_bios_and_no_machine_type() {
        let t = tag(
            &evaluated(Boot::Bios),
            "publish-all",
            "hephaestus-lucy",
            None,
            facts(),
        );
        assert_eq!(t.properties["hw_firmware_type"], "bios");
        assert!(!t.properties.contains_key("hw_machine_type"));
    }

    #[test]
    fn profile_properties_never_override_firmware() {
        let mut ev = evaluated(Boot::Uefi);
        ev.extra_properties
            .insert("hw_firmware_type".into(), "bios".into());
        let t = tag(&ev, "p", "n", None, facts());
        assert_eq!(t.properties["hw_firmware_type"], "uefi");
    }

    #[test]
    fn every_key_the_tag_stage_sets_is_reserved_to_the_pipeline() {
        // Validation refuses reserved keys in profiles; this keeps the two from drifting.
        let mut ev = evaluated(Boot::Uefi);
        ev.extra_properties.clear();
        let t = tag(&ev, "p", "n", None, facts());
        for key in t.properties.keys().chain(t.pending.keys()) {
            assert!(
                reserved_key(key).is_some(),
                "{key} is computed but not reserved"
            );
        }
        assert_eq!(reserved_key("hw_machine_type"), Some(ReservedKey::Firmware));
    }

    #[test]
    fn build_facts_fill_pending_properties_and_the_upload_adds_the_digests() {
        let ev = evaluated(Boot::Uefi);
        let without = tag(&ev, "p", "n", None, facts());
        assert!(without.pending.contains_key(keys::STORE_PATH));
        let store_path =
            crate::nix::StorePath::new("/nix/store/0123456789abcdfghijklmnpqrsvwxyz-image")
                .unwrap();
        let built = Built {
            image: crate::nix::ImageInfo {
                file: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-image/nixos.qcow2".into(),
                format: "qcow2".into(),
                boot_mode: None,
                label: Some("25.11".into()),
                system: None,
                source: crate::nix::ImageInfoSource::SingleQcow2,
            },
            output_dir: store_path.as_path().to_path_buf(),
            store_path,
            gc_root: "/tmp/r".into(),
            nar_hash: crate::nix::NarHash::new(
                "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            )
            .unwrap(),
            nar_size: 1,
            generation: "202611261200-01234567".into(),
        };
        let with = tag(&ev, "p", "n", Some(&built), facts());
        assert_eq!(with.properties[keys::OS_VERSION], "25.11");
        assert_eq!(with.properties[keys::GENERATION], "202611261200-01234567");
        assert!(!with.pending.contains_key(keys::STORE_PATH));
        // Only the digests remain, and they are exactly what the upload adds.
        let left: Vec<&str> = with.pending.keys().map(String::as_str).collect();
        let digests = Digests {
            size: 1,
            md5: "m".into(),
            sha256: "s".into(),
            sha512: "x".into(),
        };
        let added: Vec<&str> = digest_properties(&digests)
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(left, [keys::SDK_MD5, keys::SDK_SHA256]);
        assert_eq!(added, [keys::SDK_SHA256, keys::SDK_MD5]);

        // A build whose image-info names no release gets no os_version, not an empty one.
        let mut unlabelled = built;
        unlabelled.image.label = None;
        let without_label = tag(&ev, "p", "n", Some(&unlabelled), facts());
        assert!(!without_label.properties.contains_key(keys::OS_VERSION));
        assert!(!without_label.pending.contains_key(keys::OS_VERSION));
    }
}
