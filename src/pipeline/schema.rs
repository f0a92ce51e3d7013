//! The JSON Schema of the YAML files, generated from the types that read them (`spec`), so an
//! editor checks a file as it is typed and shows each key's doc comment on hover.
//!
//! The checked-in copies under `schemas/` are this output (`make schema`); a test fails when
//! they differ. The schema sees one file at a time: rules that span files (an unknown profile,
//! a name that differs from its file, the firmware policy, stage order) stay with validation.

use super::spec::{PipelineSpec, PolicySpec, ProfileSpec};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;

/// One kind of YAML file the project reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `pipelines/<name>.yaml`.
    Pipeline,
    /// `profiles/<name>.yaml`.
    Profile,
    /// `profiles/policy.yaml`.
    Policy,
}

impl Document {
    /// Every kind of file, in the order the README lists them.
    pub const ALL: [Document; 3] = [Document::Pipeline, Document::Profile, Document::Policy];

    /// The short name, as `pipeline schema NAME` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Document::Pipeline => "pipeline",
            Document::Profile => "profile",
            Document::Policy => "policy",
        }
    }

    /// The schema's file name under `schemas/`.
    pub fn file_name(self) -> String {
        format!("{}.schema.json", self.name())
    }

    /// The schema, as JSON.
    pub fn schema(self) -> serde_json::Value {
        let (title, schema) = match self {
            Document::Pipeline => ("Hephaestus pipeline", root::<PipelineSpec>()),
            Document::Profile => ("Hephaestus profile", root::<ProfileSpec>()),
            Document::Policy => ("Hephaestus firmware policy", root::<PolicySpec>()),
        };
        let mut value = schema.to_value();
        value["title"] = title.into();
        value
    }

    /// The schema as the checked-in file holds it: pretty JSON and a final newline, so the
    /// file diffs line by line.
    pub fn render(self) -> String {
        let mut text = serde_json::to_string_pretty(&self.schema())
            .expect("a schema built from serde_json values serialises");
        text.push('\n');
        text
    }
}

fn root<T: JsonSchema>() -> schemars::Schema {
    // Draft 2020-12 is what yaml-language-server and Python's jsonschema both implement.
    SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn definition<'a>(schema: &'a Value, name: &str) -> &'a Value {
        &schema["$defs"][name]
    }

    #[test]
    fn descriptions_come_from_the_doc_comments() {
        let pipeline = Document::Pipeline.schema();
        assert_eq!(
            pipeline["properties"]["concurrency"]["description"],
            "How many profiles run at once (default 2)."
        );
        let upload = definition(&pipeline, "UploadOptions");
        assert!(upload["properties"]["attempts"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Glance cannot resume an upload")));
        let profile = Document::Profile.schema();
        assert!(profile["properties"]["boot"]["$ref"].is_string());
        assert!(definition(&profile, "Boot")
            .to_string()
            .contains("EFI System Partition"));
    }

    #[test]
    fn every_stage_has_a_description_and_only_promote_needs_options() {
        let pipeline = Document::Pipeline.schema();
        let entry = definition(&pipeline, "StageEntry");
        let keyed = &entry["oneOf"][1]["properties"];
        for kind in crate::stage::Kind::ALL {
            let described = keyed[kind.name()]["description"]
                .as_str()
                .unwrap_or_default();
            assert!(!described.is_empty(), "{} has no description", kind.name());
        }
        let bare: Vec<&str> = entry["oneOf"][0]["oneOf"]
            .as_array()
            .expect("bare names")
            .iter()
            .filter_map(|v| v["const"].as_str())
            .collect();
        let expected: Vec<&str> = crate::stage::Kind::names()
            .into_iter()
            .filter(|n| *n != "promote")
            .collect();
        assert_eq!(bare, expected);
    }

    #[test]
    fn unknown_keys_are_refused_by_every_schema() {
        for document in Document::ALL {
            assert_eq!(
                document.schema()["additionalProperties"],
                Value::Bool(false),
                "{}",
                document.name()
            );
        }
    }
}
