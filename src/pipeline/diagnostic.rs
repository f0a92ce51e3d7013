//! Diagnostics: one problem in one file, with its line, column, snippet and fix, and how a
//! YAML parse error becomes one.

use serde::de::DeserializeOwned;
pub use serde_saphyr::Location;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file, with where it is and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// The file, as the user named it or relative to the root.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem concerns the whole file.
    pub line: u64,
    /// 1-based column; 0 when unknown.
    pub column: u64,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    /// The offending lines, as the YAML parser rendered them.
    #[serde(skip)]
    pub snippet: Option<String>,
}

impl Diagnostic {
    pub(crate) fn at(
        file: &Path,
        loc: Location,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        let hint = hint.into();
        Diagnostic {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message: message.into(),
            hint: (!hint.is_empty()).then_some(hint),
            snippet: None,
        }
    }

    pub(crate) fn whole_file(
        file: &Path,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic::at(file, Location::UNKNOWN, message, hint)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(snippet) = &self.snippet {
            for line in snippet.lines() {
                write!(f, "\n    {line}")?;
            }
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n    fix: {hint}")?;
        }
        Ok(())
    }
}

/// Why a project or pipeline could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// One or more files are invalid; every problem found is listed.
    #[error("{}", render_diagnostics(.0))]
    Invalid(Vec<Diagnostic>),
    /// A named pipeline has no file.
    #[error("no pipeline `{name}`: {path} does not exist (known pipelines: {known})")]
    UnknownPipeline {
        /// What the user asked for.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
        /// The pipelines that do exist.
        known: String,
    },
    /// A file is not one the pipeline reads: not a regular file, too large, not text.
    #[error("{} {source}", path.display())]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::bounded::Error,
    },
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

fn render_diagnostics(diagnostics: &[Diagnostic]) -> String {
    let mut out = match diagnostics.len() {
        1 => "1 problem found:".to_string(),
        n => format!("{n} problems found:"),
    };
    for d in diagnostics {
        out.push_str("\n  ");
        out.push_str(&d.to_string().replace('\n', "\n  "));
    }
    out
}

/// Parse one YAML file; a syntax or type error becomes a diagnostic with the parser's snippet.
pub(crate) fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, Diagnostic> {
    serde_saphyr::from_str::<T>(text).map_err(|err| {
        let loc = err.location().unwrap_or(Location::UNKNOWN);
        let name = file.display().to_string();
        let rendered =
            err.render_with_options(serde_saphyr::render_options! { source_name: Some(&name) });
        let (message, snippet) = split_rendered(&rendered);
        let hint = yaml_hint(&message);
        Diagnostic {
            file: file.to_path_buf(),
            line: loc.line(),
            column: loc.column(),
            message,
            hint,
            snippet,
        }
    })
}

/// serde-saphyr renders `message` followed by a snippet block; keep the message as the
/// diagnostic's text (without its own location suffix, which we print in front) and the rest
/// as the snippet.
fn split_rendered(rendered: &str) -> (String, Option<String>) {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or_default();
    let message = strip_location_suffix(first.trim_start_matches("error: ").trim());
    let rest: Vec<&str> = lines.collect();
    let snippet = (!rest.is_empty()).then(|| rest.join("\n"));
    (message, snippet)
}

fn strip_location_suffix(message: &str) -> String {
    // "line 3 column 7: ..." or "... at line 3, column 7": we print the location ourselves,
    // in file:line:column form, so the parser's own copy would only repeat it.
    let mut message = message;
    if message.starts_with("line ") {
        if let Some(i) = message.find(": ") {
            message = &message[i + 2..];
        }
    }
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

fn yaml_hint(message: &str) -> Option<String> {
    let m = message.to_ascii_lowercase();
    let hint = if m.contains("unknown field") {
        "remove the key or correct its spelling; the expected keys are listed above"
    } else if m.contains("missing field") {
        "add the missing key"
    } else if m.starts_with("invalid") || m.contains("invalid type") || m.contains("invalid value")
    {
        "give the value the type the message names (a number, a string, a list or a map)"
    } else if m.contains("duplicate mapping key") {
        "remove one of the two keys"
    } else if m.contains("unknown variant") {
        "use one of the values listed in the message"
    } else {
        "fix the YAML syntax at this position (indentation, a missing `:` or an unclosed bracket)"
    };
    Some(hint.to_string())
}
