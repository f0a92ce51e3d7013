//! The boot firmware an image is built for and tagged with; shared by every stage.

use serde::{Deserialize, Serialize};
use std::fmt;

/// How an image boots. Hephaestus is UEFI-only; legacy BIOS is an exception granted by
/// `profiles/policy.yaml` (shipped: `sunraku` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// UEFI with a GPT disk and an EFI System Partition; tagged `hw_firmware_type=uefi`,
    /// `hw_machine_type=q35`.
    Uefi,
    /// Legacy BIOS with an MBR disk (or GPT + BIOS boot partition); tagged
    /// `hw_firmware_type=bios`.
    Bios,
}

impl Boot {
    /// The value of Glance's `hw_firmware_type` property.
    pub fn as_str(self) -> &'static str {
        match self {
            Boot::Uefi => "uefi",
            Boot::Bios => "bios",
        }
    }
}

impl fmt::Display for Boot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
