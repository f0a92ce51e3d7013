//! Serde types for what `nix build --json` and `nix path-info --json` print, in the shapes of
//! Nix 2.8 and of newer Nix (samples in `fixtures/nix-json/`).

use super::{NarHash, StorePath};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One built derivation: what `nix build --json` reports for an installable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildOutput {
    /// The derivation that was built.
    pub drv_path: StorePath,
    /// Its `out` output (an image derivation has only that one).
    pub out: StorePath,
    /// Every output by name, `out` included.
    pub outputs: BTreeMap<String, StorePath>,
}

/// The registered facts about a valid store path that the pipeline uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// The store path.
    pub path: StorePath,
    /// The hash of its NAR serialisation, as registered in the store database.
    pub nar_hash: NarHash,
    /// The size of its NAR serialisation in bytes.
    pub nar_size: u64,
}

/// One element of `nix build --json`'s array. Unknown fields (`startTime`, `stopTime` in newer
/// Nix) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct BuildEntry {
    drv_path: StorePath,
    outputs: BTreeMap<String, StorePath>,
}

/// Entries of `nix build --json` keyed by derivation, because Nix 2.8 does not print them in
/// the order of the installables.
pub(super) fn build_outputs_by_drv(
    entries: Vec<BuildEntry>,
) -> Result<BTreeMap<StorePath, BuildOutput>, String> {
    let mut by_drv = BTreeMap::new();
    for entry in entries {
        let Some(out) = entry.outputs.get("out").cloned() else {
            return Err(format!("has no `out` output for {}", entry.drv_path));
        };
        let output = BuildOutput {
            drv_path: entry.drv_path.clone(),
            out,
            outputs: entry.outputs,
        };
        if let Some(previous) = by_drv.insert(entry.drv_path, output.clone()) {
            if previous != output {
                return Err(format!(
                    "lists {} twice with different outputs",
                    output.drv_path
                ));
            }
        }
    }
    Ok(by_drv)
}

/// The one derivation built for one installable; the error says what the JSON got wrong.
pub(super) fn single_build_output(entries: Vec<BuildEntry>) -> Result<BuildOutput, String> {
    let mut by_drv = build_outputs_by_drv(entries)?;
    if by_drv.len() > 1 {
        let drvs: Vec<_> = by_drv.keys().map(StorePath::as_str).collect();
        return Err(format!(
            "lists several derivations for one installable: {}",
            drvs.join(", ")
        ));
    }
    by_drv
        .pop_first()
        .map(|(_, output)| output)
        .ok_or_else(|| "lists no derivation".to_owned())
}

/// `nix path-info --json` in either shape.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum PathInfoJson {
    /// Nix 2.8: `[{"path": …, "narHash": …, …}]`; an invalid path has `"valid": false`.
    List(Vec<PathInfoEntry>),
    /// Newer Nix: `{"<path>": {"narHash": …, …}}`; an invalid path maps to `null`.
    Map(BTreeMap<String, Option<PathInfoEntry>>),
}

/// The fields of one `path-info` entry that matter here; others are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PathInfoEntry {
    path: Option<String>,
    nar_hash: Option<NarHash>,
    nar_size: Option<u64>,
}

/// The entry for `wanted`, matched by path (never by position).
pub(super) fn path_info_of(json: PathInfoJson, wanted: &StorePath) -> Result<PathInfo, String> {
    let entry = match json {
        PathInfoJson::List(entries) => entries
            .into_iter()
            .find(|e| e.path.as_deref() == Some(wanted.as_str())),
        PathInfoJson::Map(mut map) => map.remove(wanted.as_str()).map(|e| {
            e.unwrap_or(PathInfoEntry {
                path: None,
                nar_hash: None,
                nar_size: None,
            })
        }),
    };
    let Some(entry) = entry else {
        return Err(format!("has no entry for {wanted}"));
    };
    match (entry.nar_hash, entry.nar_size) {
        (Some(nar_hash), Some(nar_size)) => Ok(PathInfo {
            path: wanted.clone(),
            nar_hash,
            nar_size,
        }),
        _ => Err(format!(
            "has no narHash/narSize for {wanted}: it is not a valid path in the store"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILD_2_8: &str = include_str!("../../fixtures/nix-json/build-2.8.json");
    const BUILD_NEWER: &str = include_str!("../../fixtures/nix-json/build-2.26.json");
    const PATH_INFO_2_8: &str = include_str!("../../fixtures/nix-json/path-info-2.8.json");
    const PATH_INFO_NEWER: &str = include_str!("../../fixtures/nix-json/path-info-2.26.json");
    const PATH_INFO_BASE32: &str =
        include_str!("../../fixtures/nix-json/path-info-base32-narhash.json");

    const LUCY_DRV: &str = "/nix/store/l12ppmh5ww1dzbm8p5hic1laj4m26cjw-hephaestus-lucy-image.drv";
    const LUCY: &str = "/nix/store/gj30fvivgzcbgq02dwqa5q5plbhd216n-hephaestus-lucy-image";
    const SUNRAKU_DRV: &str =
        "/nix/store/g2m1izlggj1ahiswf7xrzivny4p14ilf-hephaestus-sunraku-image.drv";
    const SUNRAKU: &str = "/nix/store/rjycwzwy2riyjhcw4wrcznwh84gw5g31-hephaestus-sunraku-image";
    const LUCY_HEX: &str = "c2334b13c90f7fc73f940654e1b27822d2dcde6b80a0dd2fef2c075e4e9b75f4";

    fn sp(s: &str) -> StorePath {
        StorePath::new(s).unwrap()
    }

    #[test]
    fn build_json_of_both_versions_is_keyed_by_drv_path() {
        for sample in [BUILD_2_8, BUILD_NEWER] {
            let entries: Vec<BuildEntry> = serde_json::from_str(sample).unwrap();
            let by_drv = build_outputs_by_drv(entries).unwrap();
            assert_eq!(by_drv.len(), 2);
            assert_eq!(by_drv[&sp(LUCY_DRV)].out, sp(LUCY));
            assert_eq!(by_drv[&sp(SUNRAKU_DRV)].out, sp(SUNRAKU));
            assert_eq!(by_drv[&sp(SUNRAKU_DRV)].outputs.len(), 1);
        }
    }

    #[test]
    fn one_installable_gives_one_output() {
        let entries: Vec<BuildEntry> = serde_json::from_str(&format!(
            r#"[{{"drvPath":"{LUCY_DRV}","outputs":{{"out":"{LUCY}"}},"startTime":1,"stopTime":2}}]"#
        ))
        .unwrap();
        let out = single_build_output(entries).unwrap();
        assert_eq!(out.drv_path, sp(LUCY_DRV));
        assert_eq!(out.out, sp(LUCY));

        let entries: Vec<BuildEntry> = serde_json::from_str(BUILD_2_8).unwrap();
        let err = single_build_output(entries).unwrap_err();
        assert!(err.contains("several derivations"), "{err}");
        assert_eq!(
            single_build_output(Vec::new()).unwrap_err(),
            "lists no derivation"
        );
    }

    #[test]
    fn build_entry_without_out_or_with_bad_paths_is_rejected() {
        let entries: Vec<BuildEntry> = serde_json::from_str(&format!(
            r#"[{{"drvPath":"{LUCY_DRV}","outputs":{{"dev":"{LUCY}"}}}}]"#
        ))
        .unwrap();
        assert!(single_build_output(entries)
            .unwrap_err()
            .contains("no `out` output"));
        let bad = r#"[{"drvPath":"/tmp/x.drv","outputs":{"out":"/tmp/x"}}]"#;
        assert!(serde_json::from_str::<Vec<BuildEntry>>(bad).is_err());
    }

    #[test]
    fn path_info_of_all_shapes() {
        for sample in [PATH_INFO_2_8, PATH_INFO_NEWER, PATH_INFO_BASE32] {
            let json: PathInfoJson = serde_json::from_str(sample).unwrap();
            let info = path_info_of(json, &sp(LUCY)).unwrap();
            assert_eq!(info.path, sp(LUCY));
            assert_eq!(info.nar_size, 590648);
            assert_eq!(info.nar_hash.to_hex(), LUCY_HEX);
        }
        // The second entry is found by path, not position.
        let json: PathInfoJson = serde_json::from_str(PATH_INFO_2_8).unwrap();
        assert_eq!(path_info_of(json, &sp(SUNRAKU)).unwrap().nar_size, 459584);
    }

    #[test]
    fn path_info_of_invalid_or_missing_paths() {
        let newer_invalid = format!(r#"{{"{LUCY}":null}}"#);
        let old_invalid = format!(r#"[{{"path":"{LUCY}","valid":false}}]"#);
        for sample in [newer_invalid, old_invalid] {
            let json: PathInfoJson = serde_json::from_str(&sample).unwrap();
            let err = path_info_of(json, &sp(LUCY)).unwrap_err();
            assert!(err.contains("not a valid path"), "{err}");
        }
        let json: PathInfoJson = serde_json::from_str(PATH_INFO_NEWER).unwrap();
        let other = sp("/nix/store/00000000000000000000000000000000-other");
        assert!(path_info_of(json, &other).unwrap_err().contains("no entry"));
    }
}
