//! Glance client: the only code that speaks HTTP to OpenStack (authentication, wire types,
//! one function per image API call, and waiting for an image's status).
//!
//! Split as in rust-openstack: [`protocol`] holds the serde wire types, [`api`] one async fn
//! per HTTP call, [`auth`] picks the cloud and opens the session, [`tls`] builds the HTTPS
//! client from the entry's TLS keys, [`wait`] polls.
//!
//! Why not the `openstack` crate: its image API is read-only (no create, upload, stage,
//! import or patch), and this pipeline needs all of them. Why osauth: it reads clouds.yaml
//! and `OS_*` into the standard Keystone auth types, keeps an authenticated session with
//! token refresh and catalog lookup, and pins reqwest 0.12, which the streaming upload uses
//! directly. Tokens and passwords never appear in logs, errors or `Debug` output: errors
//! carry method, path, status and a body excerpt only.

pub mod api;
pub mod auth;
pub mod error;
pub mod protocol;
pub mod tls;
pub mod wait;

pub use api::{Glance, Hidden, ImageFilter};
pub use auth::{choose_cloud, connect, connect_to, CloudChoice};
pub use error::{Error, ErrorKind};
pub use protocol::{Image, ImageStatus, ImportInfo, NewImage, PatchOp, Visibility};
pub use wait::{wait_for_import, wait_for_status, WaitPolicy};
