//! What every floor shares about failure: the one-line error chain and the exit codes of the
//! `pipeline` command (DESIGN §7), written down once.

use std::fmt;

/// The error chain of `err` as one line: "outer: inner: root cause".
///
/// Each error's `Display` speaks for its own layer and keeps its cause in `source`, so the
/// chain reads as one sentence without repeats.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

/// The exit codes of `pipeline`. The command layer maps every error to one of these in one
/// place (`command::exit_code_of`); library code states facts (an image failed, a cleanup
/// failed) and never picks a number itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Exit {
    /// Everything published, skipped, unchanged or verified.
    Success,
    /// An image failed, and nothing was left half-published.
    Failed,
    /// A usage or configuration error: bad YAML, unknown profile, policy violation, refused
    /// credentials.
    Usage,
    /// Another `pipeline` process held the cloud's lock for longer than `--lock-timeout`:
    /// nothing was done, and trying again later is the fix.
    Busy,
    /// A cloud may hold a half-made image, or an image became visible but what had to follow
    /// did not happen; the message names the image and what is left to fix.
    Cleanup,
    /// `pipeline images --stale-after`: a current image is older than the limit, or than its
    /// own SCS `replace_frequency` promises; the message names each one.
    Stale,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Cleanup => 3,
            Exit::Busy => 4,
            Exit::Stale => 5,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_reads_as_one_line() {
        let err = Outer(std::io::Error::other("root cause"));
        assert_eq!(error_chain(&err), "outer: root cause");
    }

    #[test]
    fn the_worst_exit_wins_by_order() {
        assert!(Exit::Cleanup > Exit::Busy && Exit::Busy > Exit::Usage);
        assert!(Exit::Usage > Exit::Failed && Exit::Failed > Exit::Success);
        let codes: Vec<u8> = [
            Exit::Success,
            Exit::Failed,
            Exit::Usage,
            Exit::Busy,
            Exit::Cleanup,
            Exit::Stale,
        ]
        .map(Exit::code)
        .to_vec();
        assert_eq!(codes, [0, 1, 2, 4, 3, 5]);
    }
}
