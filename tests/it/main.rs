//! Integration tests: one binary, one module per area, shared helpers in `util`.
mod boot;
mod build;
mod cli;
mod cloud;
mod credentials;
mod glance;
mod image;
mod layers;
mod lifecycle;
mod nightly;
mod nix;
mod prod_flake;
mod promote;
mod props;
mod proxy;
mod publish;
mod util;
