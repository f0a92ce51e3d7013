//! Integration tests: one binary, one module per area, shared helpers in `util`.
mod boot;
mod build;
mod cli;
mod glance;
mod image;
mod nix;
mod prod_flake;
mod util;
