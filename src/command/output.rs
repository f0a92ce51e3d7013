//! The commands' human output: plain lines on stderr, or, with `--log-format json`, one JSON
//! log event per message, so a CI log shipper reads every line of stderr as JSON.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// The log target of the human output. Logging always lets it through, whatever `RUST_LOG`
/// says: it is the command's answer, not a diagnostic.
pub const TARGET: &str = "pipeline::output";

static JSON: AtomicBool = AtomicBool::new(false);

/// Send the human output through the JSON log from now on.
pub fn use_json(on: bool) {
    JSON.store(on, Ordering::Relaxed);
}

/// Whether the human output goes through the JSON log (progress bars are then off too).
pub fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}

/// One message: a line (or a block of lines) of the command's output. In JSON, a block is one
/// event, and a blank line (a spacer for human eyes) is none.
pub fn line(message: fmt::Arguments<'_>) {
    if json() {
        let text = message.to_string();
        let text = text.trim_end_matches('\n');
        if !text.is_empty() {
            tracing::info!(target: TARGET, "{text}");
        }
    } else {
        let text = message.to_string();
        if text.ends_with('\n') {
            eprint!("{text}");
        } else {
            eprintln!("{text}");
        }
    }
}

/// The error that ended the command, as `main` reports it.
pub fn fail(message: fmt::Arguments<'_>) {
    if json() {
        tracing::error!(target: TARGET, "{message}");
    } else {
        eprintln!("error: {message}");
    }
}

/// `say!("…", args)`: like `eprintln!`, through [`line`](fn@line).
macro_rules! say {
    () => {
        $crate::command::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::command::output::line(format_args!($($arg)*))
    };
}
pub(crate) use say;
