//! Glance v2 wire types (serde), as the 2026.1 image API sends and accepts them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Lifecycle status of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Record exists, no data yet.
    Queued,
    /// Data is being written by `PUT /file`.
    Saving,
    /// Data is being staged by `PUT /stage`.
    Uploading,
    /// An import task is moving staged data into the store.
    Importing,
    /// Usable.
    Active,
    /// Writing the data failed.
    Killed,
    /// Deleted (seen only by admins).
    Deleted,
    /// Deletion pending (delayed delete).
    PendingDelete,
    /// Data access disabled by an admin.
    Deactivated,
    /// A status this client does not know.
    #[serde(other)]
    Unknown,
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Queued => "queued",
            Self::Saving => "saving",
            Self::Uploading => "uploading",
            Self::Importing => "importing",
            Self::Active => "active",
            Self::Killed => "killed",
            Self::Deleted => "deleted",
            Self::PendingDelete => "pending_delete",
            Self::Deactivated => "deactivated",
            Self::Unknown => "unknown",
        })
    }
}

/// Who may see an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    /// Everyone (setting it needs the admin role by default).
    Public,
    /// The owner only.
    Private,
    /// The owner and the projects it is shared with (Glance's default).
    Shared,
    /// Everyone, but not listed by default.
    Community,
    /// A visibility this client does not know. Glance may answer with one; a pipeline may not
    /// ask for one, so the schema of the YAML leaves it out.
    #[serde(other)]
    #[schemars(skip)]
    Unknown,
}

/// An image record as `GET /v2/images/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Image id (UUID).
    pub id: String,
    /// Name; Glance allows none.
    #[serde(default)]
    pub name: Option<String>,
    /// Lifecycle status.
    pub status: ImageStatus,
    /// Size of the data in bytes, once uploaded.
    #[serde(default)]
    pub size: Option<u64>,
    /// Size of the disk the data describes (read from a qcow2 header).
    #[serde(default)]
    pub virtual_size: Option<u64>,
    /// Legacy MD5 of the data, hex.
    #[serde(default)]
    pub checksum: Option<String>,
    /// Algorithm of `os_hash_value` (`sha512` by default).
    #[serde(default)]
    pub os_hash_algo: Option<String>,
    /// Multihash of the data, hex.
    #[serde(default)]
    pub os_hash_value: Option<String>,
    /// Hidden images are left out of normal listings.
    #[serde(default)]
    pub os_hidden: bool,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Visibility.
    pub visibility: Visibility,
    /// Creation time, RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// Last update time, RFC 3339.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Disk format (`qcow2`, `raw`, ...), set before the data.
    #[serde(default)]
    pub disk_format: Option<String>,
    /// Container format (`bare`, ...).
    #[serde(default)]
    pub container_format: Option<String>,
    /// Project that owns the image.
    #[serde(default)]
    pub owner: Option<String>,
    /// Every other field: custom properties (strings) and the standard ones this type does
    /// not name (`min_disk`, `protected`, `stores`, `file`, `self`, `schema`, ...).
    #[serde(flatten)]
    pub properties: BTreeMap<String, serde_json::Value>,
}

impl Image {
    /// A property's value when it is a string (custom properties always are).
    pub fn property(&self, key: &str) -> Option<&str> {
        self.properties.get(key).and_then(serde_json::Value::as_str)
    }

    /// The name, or `-` when the image has none (for messages).
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("-")
    }
}

/// Body of `POST /v2/images`.
///
/// Only fields a client may set: `checksum`, `size` and `os_hash_*` are read-only in Glance
/// (403 or silently dropped), so integrity is checked after the upload instead.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewImage {
    /// Name.
    pub name: String,
    /// Disk format; must match the bytes (format inspection answers 415 otherwise).
    pub disk_format: String,
    /// Container format, normally `bare`.
    pub container_format: String,
    /// Visibility; Glance's default (`shared`) when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    /// Create the image hidden from normal listings.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub os_hidden: bool,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Minimum disk in GiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_disk: Option<u64>,
    /// Minimum RAM in MiB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ram: Option<u64>,
    /// Custom properties.
    #[serde(flatten)]
    pub properties: BTreeMap<String, String>,
}

/// `GET /v2/images/{id}/tasks`: the tasks that worked on an image (imports).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TaskList {
    /// Newest last, as Glance lists them.
    #[serde(default)]
    pub tasks: Vec<Task>,
}

/// One task of [`TaskList`].
#[derive(Debug, Clone, Deserialize)]
pub struct Task {
    /// Task id.
    pub id: String,
    /// `pending`, `processing`, `success` or `failure`.
    pub status: String,
    /// Why it failed, when it did.
    #[serde(default)]
    pub message: Option<String>,
    /// When it was last updated.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// One operation of a JSON-patch update (`application/openstack-images-v2.1-json-patch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum PatchOp {
    /// Add a property (or a tag with path `/tags/-`).
    Add {
        /// JSON pointer.
        path: String,
        /// New value.
        value: serde_json::Value,
    },
    /// Replace an existing field.
    Replace {
        /// JSON pointer.
        path: String,
        /// New value.
        value: serde_json::Value,
    },
    /// Remove a property.
    Remove {
        /// JSON pointer.
        path: String,
    },
}

impl PatchOp {
    /// Sets the field or property `key` (add works for new and existing properties in Glance).
    pub fn set(key: &str, value: impl Into<serde_json::Value>) -> Self {
        Self::Add {
            path: pointer(key),
            value: value.into(),
        }
    }

    /// Replaces the field `key`; for standard fields such as `name` and `os_hidden`.
    pub fn replace(key: &str, value: impl Into<serde_json::Value>) -> Self {
        Self::Replace {
            path: pointer(key),
            value: value.into(),
        }
    }

    /// Removes the property `key`.
    pub fn remove(key: &str) -> Self {
        Self::Remove { path: pointer(key) }
    }

    /// Replaces the whole tag list.
    pub fn tags<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let tags: Vec<serde_json::Value> = tags
            .into_iter()
            .map(|t| serde_json::Value::String(t.into()))
            .collect();
        Self::Replace {
            path: "/tags".to_owned(),
            value: tags.into(),
        }
    }
}

/// JSON pointer (RFC 6901) of a top-level key: `~` and `/` escaped.
fn pointer(key: &str) -> String {
    format!("/{}", key.replace('~', "~0").replace('/', "~1"))
}

/// One page of `GET /v2/images`.
#[derive(Debug, Deserialize)]
pub(crate) struct ImageList {
    pub(crate) images: Vec<Image>,
    #[serde(default)]
    pub(crate) next: Option<String>,
}

/// What `GET /v2/info/import` says about interoperable image import.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImportInfo {
    /// The import methods the cloud offers.
    #[serde(rename = "import-methods")]
    pub import_methods: ImportMethods,
}

/// The `import-methods` object of [`ImportInfo`].
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImportMethods {
    /// Method names, e.g. `glance-direct`, `web-download`, `copy-image`.
    #[serde(default)]
    pub value: Vec<String>,
}

impl ImportInfo {
    /// Whether the cloud offers the given import method.
    pub fn offers(&self, method: &str) -> bool {
        self.import_methods.value.iter().any(|m| m == method)
    }
}

/// Body of `POST /v2/images/{id}/import`.
#[derive(Debug, Serialize)]
pub(crate) struct ImportRequest<'a> {
    pub(crate) method: ImportMethod<'a>,
}

/// The `method` object of [`ImportRequest`].
#[derive(Debug, Serialize)]
pub(crate) struct ImportMethod<'a> {
    pub(crate) name: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_keeps_extra_properties() {
        let image: Image = serde_json::from_value(json!({
            "id": "1b6a", "name": "hephaestus-lucy", "status": "active", "size": 196616,
            "virtual_size": 1048576, "checksum": "8e30", "os_hash_algo": "sha512",
            "os_hash_value": "ab12", "os_hidden": false, "tags": ["hephaestus", "current"],
            "visibility": "shared", "created_at": "2026-11-26T11:49:00Z", "disk_format": "qcow2",
            "container_format": "bare", "min_disk": 0, "protected": false,
            "hw_firmware_type": "uefi", "owner_specified.openstack.sha256": ""
        }))
        .unwrap();
        assert_eq!(image.status, ImageStatus::Active);
        assert_eq!(image.size, Some(196_616));
        assert_eq!(image.property("hw_firmware_type"), Some("uefi"));
        assert_eq!(image.property("owner_specified.openstack.sha256"), Some(""));
        assert_eq!(image.properties.get("min_disk"), Some(&json!(0)));
        assert_eq!(image.property("protected"), None);
    }

    #[test]
    fn queued_image_without_data_decodes_and_unknown_status_is_kept_apart() {
        let image: Image = serde_json::from_value(json!({
            "id": "x", "name": null, "status": "frobbed", "size": null, "checksum": null,
            "visibility": "shared", "tags": []
        }))
        .unwrap();
        assert_eq!(image.status, ImageStatus::Unknown);
        assert_eq!(image.display_name(), "-");
        assert!(!image.os_hidden);
    }

    #[test]
    fn new_image_serializes_only_what_is_set() {
        let mut new = NewImage {
            name: "c".into(),
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            os_hidden: true,
            tags: vec!["candidate".into()],
            ..NewImage::default()
        };
        new.properties
            .insert("hw_firmware_type".into(), "uefi".into());
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            json!({"name": "c", "disk_format": "qcow2", "container_format": "bare",
                   "os_hidden": true, "tags": ["candidate"], "hw_firmware_type": "uefi"})
        );
    }

    #[test]
    fn patch_ops_serialize_as_json_patch() {
        let ops = vec![
            PatchOp::replace("name", "hephaestus-lucy"),
            PatchOp::set("owner_specified.openstack.object", "images/a/b"),
            PatchOp::remove("odd/key~"),
            PatchOp::tags(["hephaestus", "current"]),
        ];
        assert_eq!(
            serde_json::to_value(&ops).unwrap(),
            json!([
                {"op": "replace", "path": "/name", "value": "hephaestus-lucy"},
                {"op": "add", "path": "/owner_specified.openstack.object", "value": "images/a/b"},
                {"op": "remove", "path": "/odd~1key~0"},
                {"op": "replace", "path": "/tags", "value": ["hephaestus", "current"]}
            ])
        );
    }

    #[test]
    fn import_info_lists_methods() {
        let info: ImportInfo = serde_json::from_value(json!({"import-methods": {
            "description": "Import methods available.", "type": "array",
            "value": ["glance-direct", "web-download", "copy-image"]}}))
        .unwrap();
        assert!(info.offers("glance-direct"));
        assert!(!info.offers("glance-download"));
    }
}
