//! The status line (what the selected run is doing: stage, step, throughput, ETA, device) and the
//! notices of what was skipped or refused while reading runs, dismissible, never a crash.

use super::runs::OpenRun;
use crate::view::{Progress, RunState};
use eframe::egui::{self, Color32, RichText, Ui};

/// One line for the status bar.
pub fn line(run: &OpenRun) -> String {
    let p = run.model.progress();
    let device = run
        .model
        .info()
        .map(|i| i.device.clone())
        .filter(|d| !d.is_empty());
    let mut parts = vec![run.name.clone(), state_text(&p)];
    if let Some(stage) = p.stage {
        parts.push(format!("stage {stage}"));
    }
    parts.push(match p.total {
        Some(t) => format!("step {} / {t}", p.step),
        None => format!("step {}", p.step),
    });
    if let Some(r) = p.img_per_s.filter(|_| p.state == RunState::InProgress) {
        parts.push(format!("{r:.1} img/s"));
    }
    if let Some(eta) = p.eta_seconds {
        parts.push(format!("ETA {}", duration(eta)));
    }
    parts.extend(device);
    parts.join(" · ")
}

fn state_text(p: &Progress) -> String {
    match p.state {
        RunState::Waiting => "waiting for the run log".into(),
        // a run still on its first logged step is compiling GPU kernels or autotuning
        RunState::InProgress if p.step == 0 => "starting (first step: kernel compilation)".into(),
        RunState::InProgress => "in progress".into(),
        RunState::Completed { step } => format!("finished at step {step}"),
        RunState::Refused => "newer run-log format: not read".into(),
    }
}

/// `75 s`, `12 min`, `3.5 h`.
pub fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{seconds:.0} s")
    } else if seconds < 5400.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// The notices of every run, each with its run's name; "Dismiss" clears a run's notices.
pub fn notices(ui: &mut Ui, runs: &mut [OpenRun]) {
    for run in runs.iter_mut() {
        let n = run.model.notices().len();
        if n == 0 {
            continue;
        }
        let mut dismiss = false;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            ui.horizontal(|ui| {
                let title = format!("{}: {n} notice{}", run.name, if n == 1 { "" } else { "s" });
                ui.label(RichText::new(title).color(Color32::from_rgb(230, 159, 0)));
                dismiss = ui.button("Dismiss").clicked();
            });
            for notice in run.model.notices().iter().take(20) {
                ui.label(notice.to_string());
            }
            let more = n.saturating_sub(20) as u64 + run.model.notices_dropped();
            if more > 0 {
                ui.label(format!("… and {more} more"));
            }
        });
        if dismiss {
            run.model.clear_notices();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_read_naturally() {
        assert_eq!(super::duration(75.0), "75 s");
        assert_eq!(super::duration(720.0), "12 min");
        assert_eq!(super::duration(12_600.0), "3.5 h");
    }
}
