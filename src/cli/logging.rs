//! Log output of the `mimr` command (tracing): info lines plain, warnings prefixed, `-v`/`-vv` or
//! `RUST_LOG` for more; every line goes through `progress::suspend` so it never tears a bar.

use std::io::Write;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Installs the subscriber: `verbose` 0 = mimr's info lines and everyone's errors, 1 = debug,
/// 2+ = trace; `RUST_LOG` (e.g. `RUST_LOG=wgpu=warn,mimr=debug`) replaces the default filter.
pub fn init(verbose: u8) {
    let default = match verbose {
        0 => "error,mimr=info",
        1 => "warn,mimr=debug",
        _ => "info,mimr=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(StderrLines)
        .event_format(Plain {
            targets: verbose > 0,
        })
        .try_init();
}

/// `message` for info, `warning: message` / `error: message` otherwise, targets with `-v`.
struct Plain {
    targets: bool,
}

impl<S, N> FormatEvent<S, N> for Plain
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::INFO => {}
            Level::WARN => write!(w, "warning: ")?,
            Level::ERROR => write!(w, "error: ")?,
            l => write!(w, "{}: ", l.as_str().to_lowercase())?,
        }
        if self.targets {
            write!(w, "[{}] ", meta.target())?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// A writer per log line that prints it to stderr in one piece, with any progress bar hidden.
struct StderrLines;

impl<'a> MakeWriter<'a> for StderrLines {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        crate::progress::suspend(|| {
            let _ = std::io::stderr().write_all(&bytes);
        });
    }
}
