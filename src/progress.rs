//! Progress of long transfers: a byte counter the transfer code bumps, and a [`Reporter`] that
//! shows it, as a bar per image when stderr is a terminal and as a log line every 10 s
//! otherwise (CI logs and the nightly journal).
//!
//! The reporter is handed down to whoever transfers (the stages get it in their context), so
//! tests and embedders choose how progress is shown; nothing here is global.

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Counts bytes sent; cheap to clone, shared between the transfer and its display.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    sent: Arc<AtomicU64>,
}

impl Progress {
    /// Bytes counted so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Count `n` more bytes.
    pub fn add(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
}

/// Shows transfers: bars on a terminal, periodic log lines elsewhere.
#[derive(Debug, Clone)]
pub struct Reporter {
    bars: Option<MultiProgress>,
}

impl Reporter {
    /// Bars when `bars` (stderr is a terminal), else log lines.
    pub fn new(bars: bool) -> Self {
        Reporter {
            bars: bars.then(MultiProgress::new),
        }
    }

    /// Log lines only, whatever stderr is.
    pub fn lines() -> Self {
        Reporter { bars: None }
    }

    /// Start showing `progress` of `label`'s transfer of `total` bytes. Needs a tokio runtime.
    pub fn track(&self, label: &str, total: u64, progress: Progress) -> Ticker {
        let label = label.to_string();
        if let Some(bars) = &self.bars {
            let bar = bars.add(ProgressBar::new(total));
            let style = ProgressStyle::with_template(
                "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label);
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    shown.set_position(progress.sent().min(total));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            });
            return Ticker {
                task,
                bar: Some(bar),
            };
        }
        let task = tokio::spawn(async move {
            let start = Instant::now();
            loop {
                tokio::time::sleep(LOG_EVERY).await;
                tracing::info!("{}", line(&label, progress.sent(), total, start.elapsed()));
            }
        });
        Ticker { task, bar: None }
    }
}

/// The periodic progress line: `lucy: sent 224 of 1024 MiB (87.6 MiB/s, ETA 9s)`.
fn line(label: &str, sent: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    let rate = sent as f64 / secs;
    let eta = if rate > 0.0 {
        format!("{:.0}s", total.saturating_sub(sent) as f64 / rate)
    } else {
        "?".into()
    };
    format!(
        "{label}: sent {} of {} MiB ({:.1} MiB/s, ETA {eta})",
        sent >> 20,
        total >> 20,
        rate / f64::from(1u32 << 20)
    )
}

/// A running progress display; [`Ticker::finish`] ends it.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Ticker {
    /// Stop updating and remove the bar.
    pub fn finish(mut self) {
        self.task.abort();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        // A transfer that ends by `?` must not leave its display running.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_line_shows_size_rate_and_eta() {
        let mib = 1u64 << 20;
        assert_eq!(
            line("lucy", 256 * mib, 1024 * mib, Duration::from_secs(2)),
            "lucy: sent 256 of 1024 MiB (128.0 MiB/s, ETA 6s)"
        );
        assert_eq!(
            line("lucy", 0, mib, Duration::from_secs(1)),
            "lucy: sent 0 of 1 MiB (0.0 MiB/s, ETA ?)"
        );
    }
}
