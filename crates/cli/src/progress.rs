//! Transfer progress bars on stderr: bytes, rate, time left. Drawn only when
//! stderr is a terminal and neither `--quiet` nor `--json` is given.

use crate::args::Global;
use dfs_client::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;

/// A progress bar, or nothing when none should be drawn.
pub struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar for a transfer of `total` bytes (unknown for stdin).
    pub fn bytes(global: &Global, total: Option<u64>, label: &str) -> Bar {
        if global.quiet || global.json || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let bar = match total {
            Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()),
            None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
        };
        let template = if total.is_some() {
            "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta} left"
        } else {
            "{msg} {binary_bytes} {binary_bytes_per_sec}"
        };
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(label.to_string());
        Bar(Some(bar))
    }

    /// The callback the client pipelines call with each chunk's byte count.
    pub fn callback(&self) -> Option<Progress> {
        self.0
            .clone()
            .map(|bar| -> Progress { Arc::new(move |bytes| bar.inc(bytes)) })
    }

    /// Removes the bar, leaving the line for the command's own output.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.finish();
    }
}
