//! Glance client against the real local clouds started by `make cloud-up` (scripts/cloud).
//!
//! Reads `OS_CLIENT_CONFIG_FILE`, default `<repo>/.run/cloud/clouds.yaml`, and uses its
//! clouds `local` and `local-prod`. Every test fails, naming `make cloud-up`, when the file
//! is missing or the cloud does not answer. Images get unique names and are deleted at the end.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, Stream};
use hephaestus::glance::{
    connect_to, wait_for_status, CloudChoice, ErrorKind, Hidden, Image, ImageFilter, ImageStatus,
    NewImage, PatchOp, WaitPolicy,
};
use md5::Md5;
use sha2::{Digest, Sha512};

use crate::cloud::{self, chain};
use crate::util::hex;

/// Deterministic bytes that no format inspector mistakes for a disk format.
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn chunks(bytes: &[u8]) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    let parts: Vec<Result<Bytes, io::Error>> = bytes
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(parts)
}

fn raw_image(name: &str) -> NewImage {
    NewImage {
        name: name.to_owned(),
        disk_format: "raw".into(),
        container_format: "bare".into(),
        ..NewImage::default()
    }
}

const WAIT: WaitPolicy = WaitPolicy {
    delay: Duration::from_millis(200),
    timeout: Duration::from_secs(120),
};

fn assert_hashes(image: &Image, bytes: &[u8]) {
    assert_eq!(image.size, Some(bytes.len() as u64), "size of {}", image.id);
    assert_eq!(
        image.checksum.as_deref(),
        Some(hex(&Md5::digest(bytes)).as_str()),
        "md5 of {}",
        image.id
    );
    assert_eq!(image.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(hex(&Sha512::digest(bytes)).as_str()),
        "sha512 of {}",
        image.id
    );
}

#[tokio::test]
async fn glance_import_info_offers_glance_direct_on_both_clouds() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    for name in ["local", "local-prod"] {
        let info = cloud::glance(name).await.import_info().await.unwrap();
        assert!(info.offers("glance-direct"), "{name}: {info:?}");
        assert!(info.offers("web-download"), "{name}: {info:?}");
    }
}

#[tokio::test]
async fn glance_streamed_upload_keeps_properties_and_hashes_match() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let mut new = raw_image(&cloud::unique_prefix("upload"));
    new.os_hidden = true;
    new.tags = vec!["candidate".into()];
    new.properties
        .insert("hw_firmware_type".into(), "uefi".into());
    let image = glance.create_image(&new).await.unwrap();
    assert_eq!(image.status, ImageStatus::Queued);
    assert!(image.os_hidden);

    let bytes = data(3 << 20);
    glance.upload_file(&image.id, chunks(&bytes)).await.unwrap();
    let done = wait_for_status(&glance, &image.id, ImageStatus::Active, &WAIT)
        .await
        .unwrap();
    assert_hashes(&done, &bytes);
    assert_eq!(done.property("hw_firmware_type"), Some("uefi"));
    assert_eq!(done.tags, vec!["candidate".to_owned()]);

    glance.delete_image(&image.id).await.unwrap();
    let gone = glance.get_image(&image.id).await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{}", chain(&gone));
}

#[tokio::test]
async fn glance_stage_then_glance_direct_import_becomes_active() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local-prod").await;
    let image = glance
        .create_image(&raw_image(&cloud::unique_prefix("stage")))
        .await
        .unwrap();
    let bytes = data(1 << 20);
    glance.stage_image(&image.id, chunks(&bytes)).await.unwrap();
    assert_eq!(
        glance.get_image(&image.id).await.unwrap().status,
        ImageStatus::Uploading
    );
    glance.import_glance_direct(&image.id).await.unwrap();
    let done = wait_for_status(&glance, &image.id, ImageStatus::Active, &WAIT)
        .await
        .unwrap();
    assert_hashes(&done, &bytes);
    glance.delete_image(&image.id).await.unwrap();
}

#[tokio::test]
async fn glance_listing_filters_by_property_tag_status_and_hidden() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let run = cloud::unique_prefix("list");
    let mut visible = raw_image(&format!("{run}-visible"));
    visible.tags = vec!["hephaestus".into(), "current".into()];
    visible
        .properties
        .insert("hephaestus_test_run".into(), run.clone());
    let mut hidden = raw_image(&format!("{run}-hidden"));
    hidden.os_hidden = true;
    hidden.tags = vec!["hephaestus".into(), "previous".into()];
    hidden
        .properties
        .insert("hephaestus_test_run".into(), run.clone());
    let visible = glance.create_image(&visible).await.unwrap();
    let hidden = glance.create_image(&hidden).await.unwrap();

    let ids = |images: Vec<Image>| {
        let mut ids: Vec<String> = images.into_iter().map(|i| i.id).collect();
        ids.sort();
        ids
    };
    let mut filter = ImageFilter::default();
    filter
        .properties
        .insert("hephaestus_test_run".into(), run.clone());
    assert_eq!(
        ids(glance.list_images(&filter).await.unwrap()),
        vec![visible.id.clone()]
    );
    filter.hidden = Hidden::Only;
    assert_eq!(
        ids(glance.list_images(&filter).await.unwrap()),
        vec![hidden.id.clone()]
    );
    filter.hidden = Hidden::Include;
    let mut both = vec![visible.id.clone(), hidden.id.clone()];
    both.sort();
    assert_eq!(ids(glance.list_images(&filter).await.unwrap()), both);

    filter.tags = vec!["hephaestus".into(), "previous".into()];
    assert_eq!(
        ids(glance.list_images(&filter).await.unwrap()),
        vec![hidden.id.clone()]
    );
    filter.tags.clear();
    filter.status = Some(ImageStatus::Active);
    assert!(glance.list_images(&filter).await.unwrap().is_empty());

    // a name lookup never returns hidden images (DESIGN.md §6)
    let by_name = ImageFilter {
        name: hidden.name.clone(),
        ..ImageFilter::default()
    };
    assert!(glance.list_images(&by_name).await.unwrap().is_empty());

    glance.delete_image(&visible.id).await.unwrap();
    glance.delete_image(&hidden.id).await.unwrap();
}

#[tokio::test]
async fn glance_json_patch_updates_name_properties_tags_and_hidden() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let mut new = raw_image(&cloud::unique_prefix("patch"));
    new.os_hidden = true;
    new.tags = vec!["candidate".into()];
    new.properties
        .insert("hephaestus_generation".into(), "old".into());
    let image = glance.create_image(&new).await.unwrap();
    let renamed = cloud::unique_prefix("patched");
    let updated = glance
        .update_image(
            &image.id,
            &[
                PatchOp::replace("name", renamed.as_str()),
                PatchOp::replace("os_hidden", false),
                PatchOp::tags(["hephaestus", "current"]),
                PatchOp::set("hephaestus_generation", "202611261200-abcdefgh"),
                PatchOp::set("owner_specified.openstack.sha256", ""),
            ],
        )
        .await
        .unwrap();
    assert_eq!(updated.name.as_deref(), Some(renamed.as_str()));
    assert!(!updated.os_hidden);
    let mut tags = updated.tags.clone();
    tags.sort();
    assert_eq!(tags, vec!["current".to_owned(), "hephaestus".to_owned()]);
    assert_eq!(
        updated.property("hephaestus_generation"),
        Some("202611261200-abcdefgh")
    );
    assert_eq!(
        updated.property("owner_specified.openstack.sha256"),
        Some("")
    );

    let removed = glance
        .update_image(&image.id, &[PatchOp::remove("hephaestus_generation")])
        .await
        .unwrap();
    assert_eq!(removed.property("hephaestus_generation"), None);
    assert_eq!(glance.get_image(&image.id).await.unwrap(), removed);
    glance.delete_image(&image.id).await.unwrap();
}

#[tokio::test]
async fn glance_errors_carry_kinds_from_http_statuses() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let missing = glance
        .get_image("00000000-0000-4000-8000-000000000000")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{}", chain(&missing));
    assert_eq!(missing.status(), Some(404));

    // format inspection: qcow2 declared, raw bytes sent
    let mut new = raw_image(&cloud::unique_prefix("mismatch"));
    new.disk_format = "qcow2".into();
    let image = glance.create_image(&new).await.unwrap();
    let err = glance
        .upload_file(&image.id, chunks(&data(256 << 10)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedMedia, "{}", chain(&err));
    assert!(
        err.to_string()
            .contains(&format!("PUT /v2/images/{}/file on cloud local", image.id)),
        "{err}"
    );
    assert_eq!(
        glance.get_image(&image.id).await.unwrap().status,
        ImageStatus::Queued
    );

    // read-only field and a member publicizing: both 403
    let err = glance
        .update_image(&image.id, &[PatchOp::replace("checksum", "0")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{}", chain(&err));
    let err = glance
        .update_image(&image.id, &[PatchOp::replace("visibility", "public")])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Forbidden, "{}", chain(&err));
    glance.delete_image(&image.id).await.unwrap();

    // data on an active image
    let image = glance
        .create_image(&raw_image(&cloud::unique_prefix("twice")))
        .await
        .unwrap();
    glance
        .upload_file(&image.id, chunks(&data(4096)))
        .await
        .unwrap();
    let err = glance
        .upload_file(&image.id, chunks(&data(4096)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{}", chain(&err));
    glance.delete_image(&image.id).await.unwrap();
    let err = glance.delete_image(&image.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", chain(&err));
}

#[tokio::test]
async fn glance_failing_body_stream_is_reported_and_image_goes_back_to_queued() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let image = glance
        .create_image(&raw_image(&cloud::unique_prefix("broken")))
        .await
        .unwrap();
    let body = stream::iter(vec![
        Ok(Bytes::from(data(64 << 10))),
        Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "image file shrank",
        )),
    ]);
    let err = glance.upload_file(&image.id, body).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Body, "{}", chain(&err));
    assert!(chain(&err).contains("image file shrank"), "{}", chain(&err));
    let queued = wait_for_status(&glance, &image.id, ImageStatus::Queued, &WAIT)
        .await
        .unwrap();
    assert_eq!(queued.size, None);
    glance.delete_image(&image.id).await.unwrap();
}

#[tokio::test]
async fn glance_wait_gives_up_naming_the_image_and_its_status() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let name = cloud::unique_prefix("never");
    let image = glance.create_image(&raw_image(&name)).await.unwrap();
    let policy = WaitPolicy {
        delay: Duration::from_millis(100),
        timeout: Duration::from_millis(500),
    };
    let err = wait_for_status(&glance, &image.id, ImageStatus::Active, &policy)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{}", chain(&err));
    let msg = err.to_string();
    assert!(
        msg.contains(&image.id) && msg.contains(&name) && msg.contains("still queued"),
        "{msg}"
    );
    glance.delete_image(&image.id).await.unwrap();
}

#[tokio::test]
async fn glance_clouds_are_independent() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let staging = cloud::glance("local").await;
    let production = cloud::glance("local-prod").await;
    assert_ne!(staging.base_url(), production.base_url());
    let image = staging
        .create_image(&raw_image(&cloud::unique_prefix("staging-only")))
        .await
        .unwrap();
    let err = production.get_image(&image.id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{}", chain(&err));
    staging.delete_image(&image.id).await.unwrap();
}

#[tokio::test]
async fn glance_bad_password_is_an_auth_error_and_secrets_stay_out_of_messages() {
    // Shares the clouds with other tests; waits while a test has stopped Glance on purpose.
    let _cloud = cloud::shared();
    let glance = cloud::glance("local").await;
    let mut clouds = cloud::clouds();
    let password = clouds["clouds"]["local"]["auth"]["password"]
        .as_str()
        .expect("local has a password")
        .to_owned();
    assert!(!format!("{glance:?}").contains(&password));

    let wrong = "wrong-password-for-the-test";
    clouds["clouds"]["local"]["auth"]["password"] = wrong.into();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clouds.yaml");
    // JSON is YAML
    std::fs::write(&file, serde_json::to_string(&clouds).unwrap()).unwrap();
    let err = connect_to(&CloudChoice::Named {
        name: "local".into(),
        file,
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Auth, "{}", chain(&err));
    let text = format!("{} {err:?}", chain(&err));
    assert!(!text.contains(wrong) && !text.contains(&password), "{text}");
}
