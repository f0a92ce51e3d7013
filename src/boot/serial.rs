//! Reading the guest's serial console as it grows: escape sequences and carriage returns out,
//! then each line is matched against the marker and the firmware's failure messages.
//!
//! Firmware and boot loaders paint the console with ANSI sequences (OVMF clears the screen
//! before every line, GRUB moves the cursor before its text), so matching the raw bytes would
//! miss `^`-anchored markers; a carriage return is treated as a line break for the same reason.
//!
//! The kernel writes its log to the same console whenever it likes, also in the middle of a
//! line a program is printing (`heph-1 lo[    3.1] random: crng init done` and `gin:` on the
//! next line). A kernel record (`[ seconds.micros] …` up to the line's end) is therefore taken
//! out of the line it interrupts and judged on its own, for failures only (a panic is a kernel
//! record; a marker echoed in the kernel's command line must not count); the interrupted line
//! goes on after the record's line break.

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

/// The start of a kernel log record on the console: `[` seconds `.` micro-seconds `]`.
static KERNEL_RECORD: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[ *[0-9]+\.[0-9]{6}\]").expect("a constant regex"));

static FAILURES: LazyLock<Regex> = LazyLock::new(|| {
    // Constants of this file, compiled by a unit test: no input can make this fail.
    Regex::new(&FAILURE_PATTERNS.join("|")).expect("the failure patterns are valid regexes")
});

/// Removes terminal escape sequences (CSI `ESC [ … final`, OSC `ESC ] … BEL|ESC \`, and
/// two-byte `ESC x`) and NUL bytes; keeps everything else, including invalid UTF-8 as U+FFFD.
///
/// Sequences that move the cursor to a line's start or clear the screen (cursor position
/// `H`/`f`, erase display `J`, reset `ESC c`) become a line break: what follows them starts a
/// line on the screen, so a `^`-anchored marker must see a line start there too (GRUB clears
/// the screen right before a BIOS guest's `login:` prompt).
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
                            if matches!(c, 'H' | 'f' | 'J') && !out.ends_with('\n') {
                                out.push('\n');
                            }
                            break;
                        }
                    }
                }
                Some('c') if !out.ends_with('\n') => out.push('\n'),
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
    /// The watched-for rival (another host's login prompt) matched this line.
    Other(String),
}

/// Follows the console log as bytes arrive, remembering the unfinished last line.
#[derive(Debug)]
pub struct Watcher {
    marker: Regex,
    /// A line matching this and not the marker fails (another host's login prompt).
    other: Option<Regex>,
    /// Bytes after the last line break, not yet a whole line.
    partial: Vec<u8>,
    /// The start of a line that a kernel record interrupted: it goes on on the next line.
    carry: String,
}

impl Watcher {
    /// Watches for `marker`.
    pub fn new(marker: Regex) -> Self {
        Watcher {
            marker,
            other: None,
            partial: Vec::new(),
            carry: String::new(),
        }
    }

    /// Also fails on a line that matches `other` but not the marker.
    pub fn failing_on_other(mut self, other: Regex) -> Self {
        self.other = Some(other);
        self
    }

    /// Feeds newly read bytes; returns the first verdict among the lines completed so far and
    /// the unfinished line (a login prompt has no line break after it). The marker wins over
    /// a failure only when it comes first.
    pub fn feed(&mut self, bytes: &[u8]) -> Option<Verdict> {
        self.partial.extend_from_slice(bytes);
        let last_break = self.partial.iter().rposition(|&b| b == b'\n' || b == b'\r');
        let (done, rest) = match last_break {
            Some(i) => (&self.partial[..=i], &self.partial[i + 1..]),
            None => (&self.partial[..0], &self.partial[..]),
        };
        let done = strip_escapes(done);
        let rest = strip_escapes(rest);
        // `done` ends with a line break, so its last piece is not a line.
        let mut lines: Vec<&str> = done.split(['\n', '\r']).collect();
        lines.pop();
        let mut carry = std::mem::take(&mut self.carry);
        let mut verdict = lines
            .into_iter()
            .find_map(|line| self.judge_physical(&mut carry, line, true));
        if verdict.is_none() {
            // The unfinished line is judged as it stands but kept for the next feed, so the
            // carry it would leave is only tried out here.
            let mut probe = carry.clone();
            let pieces: Vec<&str> = rest.split(['\n', '\r']).collect();
            let last = pieces.len() - 1;
            verdict = pieces
                .into_iter()
                .enumerate()
                .find_map(|(i, piece)| self.judge_physical(&mut probe, piece, i < last));
        }
        self.carry = carry;
        if let Some(i) = last_break {
            self.partial.drain(..=i);
        }
        verdict
    }

    /// Judges one physical line. `carry` holds the start of a logical line a kernel record
    /// interrupted; `complete` says a line break ends this one (else it may still grow, and
    /// `carry` is only read).
    fn judge_physical(&self, carry: &mut String, line: &str, complete: bool) -> Option<Verdict> {
        let (text, record) = match KERNEL_RECORD.find(line) {
            Some(m) => (&line[..m.start()], Some(&line[m.start()..])),
            None => (line, None),
        };
        let logical = format!("{carry}{text}");
        let verdict = self
            .judge(&logical)
            .or_else(|| record.and_then(|r| self.judge_kernel(r)));
        // An empty piece is the second half of a CR LF: it neither ends nor extends a line.
        if complete && !line.is_empty() {
            if record.is_some() {
                *carry = logical;
            } else {
                carry.clear();
            }
        }
        verdict
    }

    fn judge(&self, line: &str) -> Option<Verdict> {
        if line.is_empty() {
            return None;
        }
        if self.marker.is_match(line) {
            Some(Verdict::Marker(line.trim_end().to_owned()))
        } else if FAILURES.is_match(line) {
            Some(Verdict::Failure(line.trim_end().to_owned()))
        } else if self.other.as_ref().is_some_and(|o| o.is_match(line)) {
            Some(Verdict::Other(line.trim_end().to_owned()))
        } else {
            None
        }
    }

    fn judge_kernel(&self, record: &str) -> Option<Verdict> {
        FAILURES
            .is_match(record)
            .then(|| Verdict::Failure(record.trim_end().to_owned()))
    }
}

/// Linux's reports that a CPU of the guest did not run for many seconds: RCU stall warnings
/// and the soft-lockup watchdog. Under software emulation on a busy host they come before a
/// boot that never finishes, so a timeout after them is the host's load, not the image.
const STALL_PATTERNS: &[&str] = &[
    "detected stalls on CPUs",
    "self-detected stall on CPU",
    "kthread starved for",
    "soft lockup - CPU#",
];

/// Whether the guest's kernel reported stalled CPUs anywhere in the console log.
pub fn reports_stalls(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    STALL_PATTERNS.iter().any(|p| text.contains(p))
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

    #[test]
    fn stalled_cpus_are_told_apart_from_a_normal_boot() {
        // The end of a fixture guest's log that timed out under TCG on a loaded host.
        let stalled = b"[  148.282977] rcu: rcu_preempt kthread starved for 5255 jiffies! g-1151 f0x0 RCU_GP_WAIT_FQS(5) ->state=0x402 ->cpu=0\n\
[  211.302301] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n";
        assert!(reports_stalls(stalled));
        assert!(reports_stalls(
            b"[ 58.76] watchdog: BUG: soft lockup - CPU#0 stuck for 46s! [(udev-worker):120]\n"
        ));
        // RCU's and the watchdog's start-up lines are in every boot.
        let normal = b"[    0.000000] rcu: Hierarchical RCU implementation.\n\
[    0.000000] rcu: \tRCU restricting CPUs from NR_CPUS=8192 to nr_cpu_ids=2.\n\
[    0.4] NMI watchdog: Perf NMI watchdog permanently disabled\n\
heph-1 login: ";
        assert!(!reports_stalls(normal));
    }

    fn watcher(re: &str) -> Watcher {
        Watcher::new(Regex::new(re).unwrap())
    }

    #[test]
    fn a_login_prompt_after_a_screen_clear_starts_a_line() {
        // A BIOS GRUB disk: `Welcome to GRUB!`, ESC[H ESC[J ESC[1;1H, then the prompt.
        let log = include_bytes!("../../fixtures/serial/bios-grub-clear-then-login.log");
        let marker = crate::boot::marker_for(None, "sunraku").unwrap();
        let mut w = Watcher::new(marker.clone());
        assert_eq!(
            w.feed(log),
            Some(Verdict::Marker("sunraku login:".into())),
            "{:?}",
            strip_escapes(log)
        );
        // Fed byte by byte, as the log grows, the verdict is the same.
        let mut w = Watcher::new(marker);
        let verdict = log.iter().find_map(|b| w.feed(&[*b]));
        assert_eq!(verdict, Some(Verdict::Marker("sunraku login:".into())));
    }

    #[test]
    fn login_in_running_text_is_still_not_a_prompt() {
        let log = include_bytes!("../../fixtures/serial/login-in-running-text.log");
        let mut w = Watcher::new(crate::boot::marker_for(None, "sunraku").unwrap());
        assert_eq!(w.feed(log), None, "{:?}", strip_escapes(log));
    }

    /// Real boots of the fixture flake's Linux guests (fixtures/serial/), with a config drive
    /// naming the host `heph-test1`: OVMF + GRUB EFI (screen clears, "Booting in blind mode")
    /// and SeaBIOS + GRUB i386-pc; both end with the kernel's `reboot: Power down` record on
    /// the prompt's line.
    const REAL_BOOTS: [(&str, &[u8]); 2] = [
        (
            "uefi",
            include_bytes!("../../fixtures/serial/uefi-linux-config-drive.log"),
        ),
        (
            "bios",
            include_bytes!("../../fixtures/serial/bios-linux-config-drive.log"),
        ),
    ];

    fn config_drive_watcher(hostname: &str) -> Watcher {
        Watcher::new(crate::boot::hostname_marker(hostname))
            .failing_on_other(Regex::new(crate::boot::LOGIN_MARKER).unwrap())
    }

    #[test]
    fn real_linux_boots_show_the_config_drive_host_name() {
        for (name, log) in REAL_BOOTS {
            let want = Some(Verdict::Marker("heph-test1 login:".into()));
            assert_eq!(config_drive_watcher("heph-test1").feed(log), want, "{name}");
            let mut w = config_drive_watcher("heph-test1");
            let verdict = log.iter().find_map(|b| w.feed(&[*b]));
            assert_eq!(verdict, want, "{name}, fed byte by byte");
            // Another boot's host name: this prompt is then the wrong host's.
            assert_eq!(
                config_drive_watcher("heph-other").feed(log),
                Some(Verdict::Other("heph-test1 login:".into())),
                "{name}"
            );
        }
    }

    #[test]
    fn a_real_guest_that_ignores_its_drive_shows_another_prompt() {
        let log = include_bytes!("../../fixtures/serial/uefi-linux-ignores-metadata.log");
        assert_eq!(
            config_drive_watcher("heph-test1").feed(log),
            Some(Verdict::Other("nixos login:".into()))
        );
        // Booted without a drive, the guest says localhost: fine without the metadata check.
        let log = include_bytes!("../../fixtures/serial/bios-linux-no-config-drive.log");
        let mut w = Watcher::new(crate::boot::marker_for(None, "sunraku").unwrap());
        assert_eq!(
            w.feed(log),
            Some(Verdict::Marker("localhost login:".into()))
        );
        assert_eq!(
            config_drive_watcher("heph-test1").feed(log),
            Some(Verdict::Other("localhost login:".into()))
        );
    }

    #[test]
    fn a_kernel_record_inside_the_prompt_is_taken_out() {
        // The kernel logs while the prompt is being written: the prompt goes on after it.
        let log = b"\r\nheph-test1 lo[    3.104211] random: crng init done\r\ngin: ";
        assert_eq!(
            config_drive_watcher("heph-test1").feed(log),
            Some(Verdict::Marker("heph-test1 login:".into()))
        );
        let mut w = config_drive_watcher("heph-test1");
        let verdict = log.iter().find_map(|b| w.feed(&[*b]));
        assert_eq!(verdict, Some(Verdict::Marker("heph-test1 login:".into())));
        // Two records in a row, the second on a line of its own.
        let log = b"heph-test1 log[    3.100000] a\r\n[    3.200000] b\r\nin: ";
        let mut w = config_drive_watcher("heph-test1");
        let verdict = log.iter().find_map(|b| w.feed(&[*b]));
        assert_eq!(verdict, Some(Verdict::Marker("heph-test1 login:".into())));
    }

    #[test]
    fn kernel_records_count_for_failures_only() {
        let mut w = config_drive_watcher("heph-test1");
        assert_eq!(
            w.feed(
                b"heph-te[    1.234567] Kernel panic - not syncing: VFS: Unable to mount root\r\n"
            ),
            Some(Verdict::Failure(
                "[    1.234567] Kernel panic - not syncing: VFS: Unable to mount root".into()
            ))
        );
        // An echoed marker in the kernel's command line is not the guest printing it.
        let mut w = Watcher::new(crate::boot::fixture_marker("lucy"));
        assert_eq!(
            w.feed(b"[    0.000000] Kernel command line: x=HEPHAESTUS-BOOT-OK lucy\r\n"),
            None
        );
    }

    #[test]
    fn cursor_home_clear_and_reset_are_line_starts_and_colours_vanish() {
        assert_eq!(strip_escapes(b"a\x1b[Hb\x1b[2Jc\x1bcd"), "a\nb\nc\nd");
        assert_eq!(strip_escapes(b"a\x1b[0;31mb\x1b]0;title\x07c"), "abc");
        assert_eq!(
            strip_escapes(b"a\x1b[1;1H\x1b[Jb"),
            "a\nb",
            "one break per run of moves"
        );
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
        // The final reset (`ESC c`) starts a new line.
        assert_eq!(
            strip_escapes(raw),
            "Welcome to GRUB!\nHEPHAESTUS-BOOT-OK lucy\n"
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
