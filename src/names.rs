//! The safe syntax of every name a user writes that ends up in a command line, a Nix
//! attribute path, a file name or a Glance name: profile and pipeline names, flake attribute
//! paths and image-name templates. Checked at validation, so nothing later has to quote.

use std::fmt;

/// Longest profile or pipeline name (a DNS label's length).
pub const MAX_NAME: usize = 63;
/// Longest image name after `{profile}` is replaced (Glance allows 255).
pub const MAX_IMAGE_NAME: usize = 255;

/// What is wrong with a name, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    /// The rule it breaks.
    pub rule: &'static str,
    /// The first offending character, when one is to blame.
    pub culprit: Option<char>,
}

impl fmt::Display for Unsafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.culprit {
            Some(c) if c.is_ascii_graphic() => write!(f, "`{c}` is not allowed: {}", self.rule),
            Some(c) => write!(f, "{:?} is not allowed: {}", c, self.rule),
            None => f.write_str(self.rule),
        }
    }
}

/// The rule for profile and pipeline names.
pub const NAME_RULE: &str =
    "a name is a lower-case letter, then up to 62 lower-case letters, digits or `-`";
/// The rule for flake attribute paths.
pub const ATTRIBUTE_RULE: &str = "an attribute path is identifiers (a letter or `_`, then \
     letters, digits, `_` or `-`) joined by single dots, e.g. `images.lucy`";
/// The rule for image-name templates.
pub const IMAGE_NAME_RULE: &str = "an image name is a letter or digit, then letters, digits, \
     `.`, `_` or `-`, with `{profile}` as the only placeholder, at most 255 characters";

/// [`check_name`] as a regular expression, for the JSON Schema of the YAML files (an editor
/// flags a bad name as it is typed; validation stays the authority).
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,62}$";
/// [`check_attribute`] as a regular expression, for the JSON Schema.
pub const ATTRIBUTE_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$";

fn first_bad(text: &str, ok: impl Fn(char) -> bool) -> Option<char> {
    text.chars().find(|c| !ok(*c))
}

/// A profile or pipeline name: `[a-z][a-z0-9-]{0,62}`.
pub fn check_name(name: &str) -> Result<(), Unsafe> {
    let bad = |culprit| Unsafe {
        rule: NAME_RULE,
        culprit,
    };
    if let Some(c) = first_bad(name, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
    }) {
        return Err(bad(Some(c)));
    }
    match name.chars().next() {
        None => Err(bad(None)),
        Some(c) if !c.is_ascii_lowercase() => Err(bad(Some(c))),
        _ if name.len() > MAX_NAME => Err(bad(None)),
        _ => Ok(()),
    }
}

/// A flake attribute path of safe identifiers, e.g. `images.lucy`.
pub fn check_attribute(path: &str) -> Result<(), Unsafe> {
    let bad = |culprit| Unsafe {
        rule: ATTRIBUTE_RULE,
        culprit,
    };
    for part in path.split('.') {
        if let Some(c) = first_bad(part, |c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(bad(Some(c)));
        }
        match part.chars().next() {
            None => return Err(bad(None)),
            Some(c) if !(c.is_ascii_alphabetic() || c == '_') => return Err(bad(Some(c))),
            _ => {}
        }
    }
    Ok(())
}

/// An image-name template: `{profile}` is the only placeholder; the rest `[A-Za-z0-9._-]`,
/// starting with a letter or digit.
pub fn check_image_name(template: &str) -> Result<(), Unsafe> {
    let bad = |culprit| Unsafe {
        rule: IMAGE_NAME_RULE,
        culprit,
    };
    // The longest profile name stands in for the placeholder, so the length bound holds for
    // every profile.
    let filled = template.replace("{profile}", &"p".repeat(MAX_NAME));
    if let Some(c) = first_bad(&filled, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    }) {
        return Err(bad(Some(c)));
    }
    match filled.chars().next() {
        None => Err(bad(None)),
        Some(c) if !c.is_ascii_alphanumeric() => Err(bad(Some(c))),
        _ if filled.len() > MAX_IMAGE_NAME => Err(bad(None)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The schema's patterns must refuse exactly what validation refuses, or an editor
        // would flag good files (or bless bad ones).
        #[test]
        fn the_schema_patterns_agree_with_the_checks(text in "[a-zA-Z0-9._ ;$\"{}-]{0,70}") {
            let name = regex::Regex::new(NAME_PATTERN).expect("NAME_PATTERN");
            let attribute = regex::Regex::new(ATTRIBUTE_PATTERN).expect("ATTRIBUTE_PATTERN");
            prop_assert_eq!(name.is_match(&text), check_name(&text).is_ok(), "name {:?}", text);
            prop_assert_eq!(
                attribute.is_match(&text),
                check_attribute(&text).is_ok(),
                "attribute {:?}",
                text
            );
        }
    }

    #[test]
    fn the_schema_patterns_agree_on_the_edge_cases() {
        let name = regex::Regex::new(NAME_PATTERN).expect("NAME_PATTERN");
        let attribute = regex::Regex::new(ATTRIBUTE_PATTERN).expect("ATTRIBUTE_PATTERN");
        let long = "a".repeat(63);
        let longer = "a".repeat(64);
        for text in [
            "lucy",
            "node-1",
            "a",
            &long,
            &longer,
            "",
            "Lucy",
            "1a",
            "-a",
            "a.b",
            "images.lucy",
            "_a",
            "images..lucy",
            "images.",
            ".lucy",
            "images.1lucy",
            "packages.x86_64-linux.image",
        ] {
            assert_eq!(
                name.is_match(text),
                check_name(text).is_ok(),
                "name {text:?}"
            );
            assert_eq!(
                attribute.is_match(text),
                check_attribute(text).is_ok(),
                "attribute {text:?}"
            );
        }
    }

    #[test]
    fn names_refuse_every_unsafe_character() {
        for good in ["lucy", "a", "node-1", &"a".repeat(63)] {
            check_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, culprit) in [
            ("bad name;$(id)", Some(' ')),
            ("a;b", Some(';')),
            ("a$b", Some('$')),
            ("a/b", Some('/')),
            ("a.b", Some('.')),
            ("a\"b", Some('"')),
            ("a'b", Some('\'')),
            ("a\tb", Some('\t')),
            ("a\u{7f}b", Some('\u{7f}')),
            ("lücy", Some('ü')),
            ("Lucy", Some('L')),
            ("1lucy", Some('1')),
            ("-lucy", Some('-')),
        ] {
            let err = check_name(bad).expect_err(bad);
            assert_eq!(err.culprit, culprit, "{bad}: {err}");
            assert!(err.to_string().contains("lower-case letter"), "{err}");
        }
        assert!(check_name("").is_err());
        assert!(check_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn attributes_are_dotted_identifiers_only() {
        for good in [
            "images.lucy",
            "images.lucy-test",
            "packages.x86_64-linux.image",
            "_a",
        ] {
            check_attribute(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "images.\"lucy\"",
            "images.${builtins.abort \"x\"}",
            "images..lucy",
            "images.",
            ".lucy",
            "images lucy",
            "images.1lucy",
            "images.lucy'",
        ] {
            assert!(check_attribute(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_names_allow_the_profile_placeholder_only() {
        for good in ["hephaestus-{profile}", "img.{profile}_v2", "{profile}"] {
            check_image_name(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            "a b-{profile}",
            "x/{profile}",
            "{name}",
            "-{profile}",
            "a;{profile}",
            "",
        ] {
            assert!(check_image_name(bad).is_err(), "{bad}");
        }
        let long = format!("{}-{{profile}}", "a".repeat(200));
        assert!(
            check_image_name(&long).is_err(),
            "too long with a 63-character profile"
        );
        assert!(check_image_name(&"a".repeat(200)).is_ok());
    }
}
