//! The one process runner behind every `nix` call: stdout captured for JSON, stderr streamed to
//! `tracing` with a bounded tail kept for the error, a timeout, and kill on drop.

use super::{Error, Result};
use serde::de::DeserializeOwned;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;

/// How many stderr lines a failed command reports: enough for Nix's "last 10 log lines" of a
/// failed builder plus the `error:` lines around them.
pub const STDERR_TAIL_LINES: usize = 40;

/// Longest stderr line kept in the tail; a builder may print megabytes without a newline.
const MAX_LINE_BYTES: usize = 2000;
/// Largest stdout read from `nix` (its JSON answers are a few KiB).
pub const MAX_STDOUT_BYTES: u64 = 64 << 20;

/// How much of an unparsable stdout an error quotes.
const EXCERPT_CHARS: usize = 200;

/// One command line, ready to run.
pub(super) struct NixCommand<'a> {
    pub program: &'a OsStr,
    pub args: Vec<OsString>,
    pub env: &'a [(OsString, OsString)],
}

impl NixCommand<'_> {
    /// The command line as a user would type it, for messages.
    pub fn argv(&self) -> String {
        std::iter::once(self.program)
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs the command to completion and returns its stdout; a non-zero exit, a timeout or a
    /// failure to start is an error carrying argv and the stderr tail.
    pub async fn run(&self, timeout: Duration) -> Result<Vec<u8>> {
        let argv = self.argv();
        tracing::debug!("running {argv}");
        let mut cmd = Command::new(self.program);
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A dropped future (cancelled run, timeout) must not leave `nix` running.
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| Error::Spawn {
            argv: argv.clone(),
            source,
        })?;
        let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Error::Io {
                argv,
                source: std::io::Error::other("child has no stdout/stderr pipe"),
            });
        };

        let mut tail = VecDeque::with_capacity(STDERR_TAIL_LINES);
        let mut out = Vec::new();
        let finished = tokio::time::timeout(timeout, async {
            // All three at once: a child blocked on a full stdout pipe never exits. Stdout is
            // read up to a bound; past it the run ends (and `kill_on_drop` stops the child).
            let read_out = async {
                (&mut stdout)
                    .take(MAX_STDOUT_BYTES + 1)
                    .read_to_end(&mut out)
                    .await?;
                if out.len() as u64 > MAX_STDOUT_BYTES {
                    return Err(std::io::Error::other(format!(
                        "it printed more than {MAX_STDOUT_BYTES} bytes on stdout, more than \
                         any answer the pipeline asks for"
                    )));
                }
                Ok(())
            };
            let (_, _, status) =
                tokio::try_join!(read_out, stream_stderr(stderr, &mut tail), child.wait(),)?;
            Ok(status)
        })
        .await;

        let status = match finished {
            Ok(Ok(status)) => status,
            Ok(Err(source)) => return Err(Error::Io { argv, source }),
            Err(_elapsed) => {
                // Ignore the kill's own error: the child may have exited in the meantime, and
                // the timeout is what the user needs to hear about.
                let _ = child.kill().await;
                return Err(Error::Timeout {
                    argv,
                    timeout,
                    stderr_tail: tail.into(),
                });
            }
        };
        if !status.success() {
            return Err(Error::Failed {
                argv,
                status,
                stderr_tail: tail.into(),
            });
        }
        Ok(out)
    }

    /// Parses the stdout of [`NixCommand::run`] as `T`.
    pub fn parse_json<T: DeserializeOwned>(&self, stdout: &[u8]) -> Result<T> {
        serde_json::from_slice(stdout).map_err(|source| Error::Json {
            argv: self.argv(),
            excerpt: excerpt(stdout),
            source,
        })
    }
}

/// Logs each stderr line at debug level and keeps the last [`STDERR_TAIL_LINES`].
async fn stream_stderr(
    stderr: impl AsyncRead + Unpin,
    tail: &mut VecDeque<String>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        tracing::debug!(target: "hephaestus::nix::stderr", "{line}");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(truncate(line, MAX_LINE_BYTES));
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    let mut out: String = trimmed.chars().take(EXCERPT_CHARS).collect();
    if trimmed.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out
}

/// Quotes an argument for a POSIX shell when it needs it, so a logged command can be pasted.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '-' | '_' | '.' | '/' | ':' | '=' | '+' | ',' | '@' | '%')
        });
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> (OsString, Vec<OsString>) {
        (
            OsString::from("sh"),
            vec![OsString::from("-c"), OsString::from(script)],
        )
    }

    async fn run_sh(script: &str, timeout: Duration) -> Result<Vec<u8>> {
        let (program, args) = sh(script);
        NixCommand {
            program: &program,
            args,
            env: &[],
        }
        .run(timeout)
        .await
    }

    #[test]
    fn argv_quotes_only_what_needs_it() {
        let program = OsString::from("nix");
        let cmd = NixCommand {
            program: &program,
            args: vec![
                "build".into(),
                "path:/a b#images.lucy".into(),
                "it's".into(),
            ],
            env: &[],
        };
        assert_eq!(cmd.argv(), r"nix build 'path:/a b#images.lucy' 'it'\''s'");
    }

    #[tokio::test]
    async fn an_endless_stdout_is_cut_at_the_bound_and_the_child_stopped() {
        let (program, args) = sh("cat /dev/zero");
        let cmd = NixCommand {
            program: &program,
            args,
            env: &[],
        };
        let err = cmd.run(Duration::from_secs(600)).await.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains("cat /dev/zero"),
            "names the argv: {err}"
        );
        let cause = std::error::Error::source(&err).map(ToString::to_string);
        assert!(cause.is_some_and(|c| c.contains("more than")), "{err:?}");
    }

    #[tokio::test]
    async fn stdout_is_returned_and_env_is_passed() {
        let (program, args) = sh("printf '%s' \"$HEPH_TEST_VALUE\"");
        let env = [(OsString::from("HEPH_TEST_VALUE"), OsString::from("[1,2]"))];
        let cmd = NixCommand {
            program: &program,
            args,
            env: &env,
        };
        let out = cmd.run(Duration::from_secs(30)).await.unwrap();
        let parsed: Vec<u32> = cmd.parse_json(&out).unwrap();
        assert_eq!(parsed, [1, 2]);
    }

    #[tokio::test]
    async fn failure_reports_argv_status_and_stderr_tail() {
        let script = "i=0; while [ $i -lt 50 ]; do echo line$i >&2; i=$((i+1)); done; exit 3";
        let err = run_sh(script, Duration::from_secs(30)).await.unwrap_err();
        let Error::Failed {
            ref stderr_tail,
            status,
            ..
        } = err
        else {
            panic!("expected Failed, got {err:?}");
        };
        assert_eq!(status.code(), Some(3));
        assert_eq!(stderr_tail.len(), STDERR_TAIL_LINES);
        assert_eq!(stderr_tail.first().map(String::as_str), Some("line10"));
        assert_eq!(stderr_tail.last().map(String::as_str), Some("line49"));
        let msg = err.to_string();
        assert!(msg.starts_with("`sh -c 'i=0;"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("  line49"), "{msg}");
        assert!(!msg.contains("line9\n"), "{msg}");
    }

    #[tokio::test]
    async fn timeout_kills_and_keeps_stderr() {
        let err = run_sh(
            "echo started >&2; exec sleep 60",
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        match err {
            Error::Timeout { stderr_tail, .. } => assert_eq!(stderr_tail, ["started"]),
            other => panic!("expected Timeout, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let program = OsString::from("/nonexistent/hephaestus-test/nix");
        let err = NixCommand {
            program: &program,
            args: vec!["--version".into()],
            env: &[],
        }
        .run(Duration::from_secs(30))
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err:?}");
        assert!(err
            .to_string()
            .contains("/nonexistent/hephaestus-test/nix --version"));
    }

    #[test]
    fn bad_json_shows_an_excerpt() {
        let program = OsString::from("nix");
        let cmd = NixCommand {
            program: &program,
            args: vec!["eval".into()],
            env: &[],
        };
        let long = format!("warning: not json {}", "x".repeat(500));
        let err = cmd.parse_json::<Vec<u32>>(long.as_bytes()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`nix eval`"), "{msg}");
        assert!(msg.contains("\"warning: not json xxx"), "{msg}");
        assert!(msg.len() < 400, "{msg}");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let s = "é".repeat(2000);
        let cut = truncate(&s, 1001);
        assert!(cut.ends_with('…'));
        assert_eq!(cut.chars().count(), 501);
    }
}
