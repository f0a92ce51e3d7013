//! Upload progress: a bar per image (bytes, rate, ETA) when stderr is a terminal, plain
//! periodic log lines otherwise (CI logs and the nightly journal).

use crate::stage::upload::Progress;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How often a line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(MultiProgress::new)
}

/// A running progress display; [`Ticker::finish`] ends it.
pub struct Ticker {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Ticker {
    /// Stop updating and remove the bar.
    pub fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Start showing `progress` of `profile`'s upload of `total` bytes.
pub fn start(profile: &str, total: u64, progress: Progress, as_bars: bool) -> Ticker {
    let profile = profile.to_string();
    if as_bars {
        let bar = bars().add(ProgressBar::new(total));
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(profile);
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
            let sent = progress.sent();
            let secs = start.elapsed().as_secs_f64().max(0.001);
            let rate = sent as f64 / secs;
            let eta = if rate > 0.0 {
                format!("{:.0}s", total.saturating_sub(sent) as f64 / rate)
            } else {
                "?".into()
            };
            tracing::info!(
                "{profile}: uploaded {} of {} MiB ({:.1} MiB/s, ETA {eta})",
                sent >> 20,
                total >> 20,
                rate / f64::from(1u32 << 20)
            );
        }
    });
    Ticker { task, bar: None }
}
