//! Progress of long commands: an indicatif bar (rate and ETA) on a terminal, a plain line every
//! N units otherwise; log lines printed meanwhile go through [`suspend`] so they never tear the bar.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Instant;

/// The bar currently drawn, if any (one at a time).
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// Runs `f` (e.g. printing a log line) with the active bar hidden.
pub fn suspend<R>(f: impl FnOnce() -> R) -> R {
    let bar = ACTIVE.lock().ok().and_then(|b| b.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

/// One long task's progress, counted in `unit`s (steps, images, samples).
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    unit: &'static str,
    total: u64,
    first: u64,
    pos: u64,
    started: Instant,
    /// Without a terminal: a line every this many units (and at the end).
    plain_every: u64,
    next_line: u64,
}

impl Progress {
    /// Progress over `total` units of which `done` are already done (a resumed run).
    pub fn new(label: &str, unit: &'static str, total: u64, done: u64) -> Self {
        let plain_every = (total / 20).max(1);
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template = format!(
                "{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}  {{per_sec}}  ETA {{eta}}  {{msg}}"
            );
            if let Ok(style) = ProgressStyle::with_template(&template) {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_prefix(label.to_string());
            b.set_position(done);
            b.reset_eta();
            if let Ok(mut a) = ACTIVE.lock() {
                *a = Some(b.clone());
            }
            b
        });
        Self {
            bar,
            label: label.to_string(),
            unit,
            total,
            first: done,
            pos: done,
            started: Instant::now(),
            plain_every,
            next_line: done + plain_every,
        }
    }

    /// Without a terminal, print a line every `n` units instead of every 5 %.
    pub fn with_plain_every(mut self, n: u64) -> Self {
        self.plain_every = n.max(1);
        self.next_line = self.pos + self.plain_every;
        self
    }

    /// Advances to `pos` with a status message (e.g. the loss).
    pub fn set(&mut self, pos: u64, msg: &str) {
        self.pos = pos;
        if let Some(b) = &self.bar {
            b.set_position(pos);
            b.set_message(msg.to_string());
        } else if pos >= self.next_line || pos >= self.total {
            self.next_line = pos + self.plain_every;
            eprintln!("{}", self.line(msg));
        }
    }

    /// Advances by `n` units.
    pub fn inc(&mut self, n: u64) {
        self.set(self.pos + n, "");
    }

    /// Units per second since this progress started.
    pub fn rate(&self) -> f64 {
        self.pos.saturating_sub(self.first) as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn line(&self, msg: &str) -> String {
        let rate = self.rate();
        let left = self.total.saturating_sub(self.pos) as f64;
        let eta = if rate > 0.0 { left / rate } else { 0.0 };
        format!(
            "[{}] {}/{} {}  {rate:.1} {}/s  ETA {eta:.0}s  {msg}",
            self.label, self.pos, self.total, self.unit, self.unit
        )
    }

    /// Removes the bar (the caller prints its own summary).
    pub fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            if let Ok(mut a) = ACTIVE.lock() {
                *a = None;
            }
        }
    }
}
