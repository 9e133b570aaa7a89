//! The desktop app driven headless with egui_kittest on a recorded run (tests/fixtures/run_small,
//! made by tools/make_run_fixture.sh): status, tabs, the heat map's summary checked against the
//! run log read independently, a damaged log shown as a notice, and a wgpu render (lavapipe).

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use mimr::app::runs::OpenRun;
use mimr::app::{MimrApp, Tab};
use mimr::runlog::{self, Event};
use mimr::view::DirSource;
use mimr::view::files::{DirFiles, RunFiles};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_small")
}

/// The run directory `dir` read on the UI thread, its files served from disk.
fn open(dir: &Path) -> OpenRun {
    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(dir));
    OpenRun::from_source(Box::new(DirSource::new(dir.to_path_buf())), Some(files))
}

fn harness(dirs: &[&Path]) -> Harness<'static, MimrApp> {
    let mut h = harness_of(dirs.iter().map(|d| open(d)).collect());
    h.run();
    h
}

/// The app over `runs`, not yet run.
fn harness_of(runs: Vec<OpenRun>) -> Harness<'static, MimrApp> {
    Harness::builder()
        .with_size([1280.0, 820.0])
        .build_ui_state(
            |ui, app: &mut MimrApp| app.frame(ui),
            MimrApp::with_runs(runs),
        )
}

/// The best block at the last evaluation, computed from the run log alone.
fn best_at_last_eval(dir: &Path) -> (String, f64, u64) {
    let log = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    let last = log
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::Eval(e) => Some(e),
            _ => None,
        })
        .expect("the fixture has eval events");
    let (name, v) = last
        .heads
        .iter()
        .filter_map(|(n, h)| Some((n.clone(), h.knn.as_ref()?.get("k10")?.as_ref().copied()?)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    (name, v, last.step)
}

#[test]
fn a_recorded_run_shows_its_status_curves_and_layers() {
    let mut h = harness(&[&fixture()]);
    let end = runlog::read_all(&fixture().join(runlog::FILE)).unwrap();
    let end_step = end.events.iter().find_map(|e| match e {
        Event::End { step } => Some(*step),
        _ => None,
    });
    let end_step = end_step.expect("the fixture run completed");
    h.get_by_label_contains(&format!("finished at step {end_step}"));
    h.get_by_label("nn-accuracy");
    h.get_by_label("online eval: knn.k10");
    h.get_by_label("Layers").click();
    h.run();
    assert_eq!(h.state().tab(), Tab::Layers);
    let (head, v, step) = best_at_last_eval(&fixture());
    let summary = format!("best at step {step}: ");
    let best = format!("({head}) with knn.k10 {v:.3}");
    let line = h.get_by_label_contains(&summary);
    assert!(format!("{line:?}").contains(&best), "{line:?} lacks {best}");
    // keyboard: 1 goes back to the curves
    h.key_press(eframe::egui::Key::Num1);
    h.run();
    assert_eq!(h.state().tab(), Tab::Curves);
}

#[test]
fn a_damaged_log_opens_with_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    // the recorded run's files, then its log with line 4 cut in half
    std::fs::create_dir(dir.path().join("snapshots")).unwrap();
    for f in ["thumbnails.png", "thumbnails.json", "config.toml"] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    for e in std::fs::read_dir(fixture().join("snapshots")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(
            &p,
            dir.path().join("snapshots").join(p.file_name().unwrap()),
        )
        .unwrap();
    }
    let log = std::fs::read_to_string(fixture().join(runlog::FILE)).unwrap();
    let mut lines: Vec<&str> = log.lines().collect();
    let third = lines[3].to_string();
    let cut = &third[..third.len() / 2];
    lines[3] = cut;
    std::fs::write(dir.path().join(runlog::FILE), lines.join("\n") + "\n").unwrap();
    let h = harness(&[dir.path()]);
    h.get_by_label_contains("1 notice");
    h.get_by_label_contains("line 4 skipped");
    // the rest of the run is still read
    h.get_by_label_contains("finished at step");
}

#[test]
fn the_app_renders_the_heat_map_with_wgpu() {
    let runs = vec![open(&fixture())];
    let mut h = Harness::builder()
        .with_size([900.0, 600.0])
        .wgpu()
        .build_ui_state(
            |ui, app: &mut MimrApp| app.frame(ui),
            MimrApp::with_runs(runs),
        );
    h.run();
    h.get_by_label("Layers").click();
    h.run();
    let img = h
        .render()
        .expect("renders on the wgpu adapter (lavapipe here)");
    // the heat map's cells are filled with viridis colours (text and chrome are not)
    let ramp: std::collections::HashSet<[u8; 3]> = (0..=1000)
        .map(|i| mimr::app::palette::viridis(i as f64 / 1000.0).to_array())
        .map(|[r, g, b, _]| [r, g, b])
        .collect();
    let cells = img
        .pixels()
        .filter(|p| ramp.contains(&[p.0[0], p.0[1], p.0[2]]))
        .count();
    assert!(cells > 1000, "no heat map drawn: {cells} viridis pixels");
}

#[test]
fn opening_a_missing_folder_says_so_and_opens_nothing() {
    let mut app = MimrApp::with_runs(Vec::new());
    app.open_dir(PathBuf::from("/nonexistent/mimr-run"));
    let mut h = Harness::builder()
        .with_size([1000.0, 600.0])
        .build_ui_state(|ui, app: &mut MimrApp| app.frame(ui), app);
    h.run();
    h.get_by_label_contains("/nonexistent/mimr-run is not a run directory");
    h.get_by_label_contains("Open a run directory (written by `mimr refine`)");
}

#[test]
fn a_live_run_with_a_single_step_draws_its_curves() {
    // the fixture's first four lines: header, thumbnails, eval at step 0, the first step
    let text = std::fs::read_to_string(fixture().join(runlog::FILE)).unwrap();
    let head: Vec<&str> = text.lines().take(4).collect();
    assert!(
        head[3].contains(r#""type":"step""#),
        "line 4 is the first step"
    );
    let mut source = mimr::view::MemorySource::new("one-step");
    source.push_bytes((head.join("\n") + "\n").as_bytes());
    let mut h = harness_of(vec![OpenRun::from_source(Box::new(source), None)]);
    // one point per line: zero-width x ranges (the one-ulp case is a unit test in app::curves)
    h.run();
    assert_eq!(h.state().runs()[0].model.steps().len(), 1);
    h.get_by_label_contains("loss");
}
