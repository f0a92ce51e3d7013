//! Hephaestus image pipeline: evaluates NixOS profiles, builds their images with Nix, tags
//! their firmware, verifies them, proves they boot and publishes them into OpenStack Glance.
//!
//! The modules form floors; each uses only the floors below it (docs/architecture.md, checked
//! by the layering test): `error`, `bounded`, `progress`, `firmware`, `names`, `scs` and `profile`
//! on the ground floor;
//! the doors to the outside world `glance`, `nix`, `image` and `boot`; the image family's rules
//! in `lifecycle`; one file per stage in `stage`; loading and running YAML in `pipeline`.

pub mod boot;
pub mod bounded;
pub mod error;
pub mod firmware;
pub mod glance;
pub mod image;
pub mod lifecycle;
pub mod names;
pub mod nix;
pub mod pipeline;
pub mod profile;
pub mod progress;
pub mod scs;
pub mod stage;
