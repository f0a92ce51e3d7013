//! Reading the guest's serial console as it grows: escape sequences and carriage returns out,
//! then each line is matched against the marker and the firmware's failure messages.
//!
//! Firmware and boot loaders paint the console with ANSI sequences (OVMF clears the screen
//! before every line, GRUB moves the cursor before its text), so matching the raw bytes would
//! miss `^`-anchored markers; a carriage return is treated as a line break for the same reason.

use regex::Regex;
use std::sync::LazyLock;

/// Messages after which the guest will not boot: SeaBIOS, OVMF's boot manager and shell,
/// Secure Boot refusal, GRUB rescue, Linux panics and systemd emergency mode. Measured on this
/// project's fixtures and on Debian/NixOS guests (see the module docs of `boot`).
pub const FAILURE_PATTERNS: &[&str] = &[
    "No bootable device",
    "Boot failed: not a bootable disk",
    "BdsDxe: No bootable option",
    "UEFI Interactive Shell",
    "Press ESC in [0-9]+ seconds to skip startup.nsh",
    "Shell> ",
    "Boot Manager Menu",
    "Access Denied",
    "grub rescue>",
    "Kernel panic - not syncing",
    "You are in emergency mode",
    "Give root password for maintenance",
];

static FAILURES: LazyLock<Regex> = LazyLock::new(|| {
    // Constants of this file, compiled by a unit test: no input can make this fail.
    Regex::new(&FAILURE_PATTERNS.join("|")).expect("the failure patterns are valid regexes")
});

/// Removes terminal escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ESC \`, and
/// two-byte `ESC x`) and NUL bytes; keeps everything else, including invalid UTF-8 as U+FFFD.
pub fn strip_escapes(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                Some('[') => {
                    // Parameters and intermediates, up to the final byte 0x40..=0x7E.
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                Some(']') => {
                    while let Some(c) = chars.next() {
                        if c == '\u{7}' {
                            break;
                        }
                        if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                            chars.next();
                            break;
                        }
                    }
                }
                _ => {}
            },
            '\0' => {}
            c => out.push(c),
        }
    }
    out
}

/// What a line of the console said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The marker matched this line.
    Marker(String),
    /// A failure message matched this line.
    Failure(String),
}

/// Follows the console log as bytes arrive, remembering the unfinished last line.
#[derive(Debug)]
pub struct Watcher {
    marker: Regex,
    /// Bytes after the last line break, not yet a whole line.
    partial: Vec<u8>,
}

impl Watcher {
    /// Watches for `marker`.
    pub fn new(marker: Regex) -> Self {
        Watcher {
            marker,
            partial: Vec::new(),
        }
    }

    /// Feeds newly read bytes; returns the first verdict among the lines completed so far and
    /// the unfinished line (a login prompt has no line break after it). The marker wins over
    /// a failure only when it comes first.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Verdict> {
        self.partial.extend_from_slice(bytes);
        let last_break = self.partial.iter().rposition(|&b| b == b'\n' || b == b'\r');
        let verdict = {
            let (done, rest) = match last_break {
                Some(i) => (&self.partial[..=i], &self.partial[i + 1..]),
                None => (&self.partial[..0], &self.partial[..]),
            };
            let done = strip_escapes(done);
            let rest = strip_escapes(rest);
            done.split(['\n', '\r'])
                .chain(std::iter::once(rest.as_str()))
                .find_map(|line| self.judge(line))
        };
        if let Some(i) = last_break {
            self.partial.drain(..=i);
        }
        verdict
    }

    fn judge(&self, line: &str) -> Option<Verdict> {
        if self.marker.is_match(line) {
            Some(Verdict::Marker(line.trim_end().to_owned()))
        } else if FAILURES.is_match(line) {
            Some(Verdict::Failure(line.trim_end().to_owned()))
        } else {
            None
        }
    }
}

/// The last `n` non-empty lines of a console log, escapes stripped, for error messages.
pub fn tail_lines(raw: &[u8], n: usize) -> Vec<String> {
    let text = strip_escapes(raw);
    let lines: Vec<&str> = text
        .split(['\n', '\r'])
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watcher(re: &str) -> Watcher {
        Watcher::new(Regex::new(re).unwrap())
    }

    #[test]
    fn failure_patterns_compile() {
        for p in FAILURE_PATTERNS {
            Regex::new(p).unwrap();
        }
        assert!(FAILURES.is_match("UEFI Interactive Shell v2.2"));
    }

    #[test]
    fn escapes_are_stripped() {
        let raw = b"\x1b[0m\x1b[30m\x1b[47mWelcome to GRUB!\n\x1b[1;1HHEPHAESTUS-BOOT-OK lucy\x1b]0;t\x07\x1bc";
        assert_eq!(
            strip_escapes(raw),
            "Welcome to GRUB!\nHEPHAESTUS-BOOT-OK lucy"
        );
        assert_eq!(strip_escapes(b"\x1b[=3hx\0y"), "xy");
    }

    #[test]
    fn marker_after_cursor_moves_matches_anchored() {
        let mut w = watcher("^HEPHAESTUS-BOOT-OK lucy$");
        assert_eq!(
            w.feed(b"\x1b[0m\x1b[H\x1b[J\x1b[1;1HHEPHAESTUS-BOOT-"),
            None
        );
        assert_eq!(
            w.feed(b"OK lucy\r\n"),
            Some(Verdict::Marker("HEPHAESTUS-BOOT-OK lucy".into()))
        );
    }

    #[test]
    fn login_prompt_without_newline_matches() {
        let mut w = watcher(r"^\S+ login:");
        assert_eq!(w.feed(b"<<< Welcome to NixOS >>>\r\n\r\n"), None);
        assert_eq!(
            w.feed(b"lucy login: "),
            Some(Verdict::Marker("lucy login:".into()))
        );
    }

    #[test]
    fn echoed_marker_in_a_command_line_does_not_match_anchored_prompt() {
        let mut w = watcher(r"^\S+ login:");
        assert_eq!(
            w.feed(b"[    0.000000] Kernel command line: console=ttyS0 x=\"a login:\"\n"),
            None
        );
    }

    #[test]
    fn failures_are_seen_and_order_decides() {
        let mut w = watcher("MARK");
        assert_eq!(
            w.feed(b"BdsDxe: starting Boot0002\r\n\x1b[2JUEFI Interactive Shell v2.2\r\n"),
            Some(Verdict::Failure("UEFI Interactive Shell v2.2".into()))
        );
        let mut w = watcher("MARK");
        assert_eq!(
            w.feed(b"MARK\nKernel panic - not syncing\n"),
            Some(Verdict::Marker("MARK".into()))
        );
        let mut w = watcher("MARK");
        assert_eq!(
            w.feed(b"Booting from Hard Disk...\r\nBoot failed: not a bootable disk\r\n\r\nNo bootable device.\r\n"),
            Some(Verdict::Failure("Boot failed: not a bootable disk".into()))
        );
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let t = tail_lines(b"a\r\n\r\nb\n\x1b[2Jc\n", 2);
        assert_eq!(t, vec!["b".to_owned(), "c".to_owned()]);
        assert!(tail_lines(b"", 5).is_empty());
    }
}
