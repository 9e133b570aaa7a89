//! The Curves tab's MAE reconstructions on a tiny pre-training run directory written here (a
//! header, a step, a `reconstructions` event and a PNG made with the `image` crate): the section is
//! listed, opens to the image at its size, is decoded once, and a missing file is a message.

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use mimr::app::MimrApp;
use mimr::app::runs::OpenRun;
use mimr::view::DirSource;
use mimr::view::files::{DirFiles, RunFiles};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The step of the `reconstructions` event.
const STEP: u64 = 40;
/// The PNG's size: 3 columns of 8 px, 3 rows.
const W: u32 = 24;
const H: u32 = 24;

/// Writes a pre-training run's log into `dir`, and its reconstructions PNG when `png`.
fn write_run(dir: &Path, png: bool) {
    let image = format!("reconstructions/step-{STEP:09}.png");
    let lines = [
        r#"{"type":"header","version":1,"minor":4,"kind":"pretrain","dataset":"d","device":"cpu"}"#
            .to_string(),
        format!(
            r#"{{"type":"pretrain_step","step":{STEP},"epoch":0,"lr":0.001,"img_per_s":10.0,"loss":0.5}}"#
        ),
        format!(
            r#"{{"type":"reconstructions","step":{STEP},"image":"{image}","samples":[0,1,2],"mask_ratio":0.75}}"#
        ),
    ];
    std::fs::write(dir.join("events.jsonl"), lines.join("\n") + "\n").unwrap();
    if png {
        std::fs::create_dir(dir.join("reconstructions")).unwrap();
        let img = image::RgbImage::from_fn(W, H, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 10) as u8, 128])
        });
        img.save(dir.join(image)).unwrap();
    }
}

/// The app over the run directory `dir`, read on the UI thread, its files served from disk.
fn harness(dir: &Path) -> Harness<'static, MimrApp> {
    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(dir));
    let run = OpenRun::from_source(Box::new(DirSource::new(dir.to_path_buf())), Some(files));
    let mut h = Harness::builder()
        .with_size([1280.0, 820.0])
        .build_ui_state(
            |ui, app: &mut MimrApp| app.frame(ui),
            MimrApp::with_runs(vec![run]),
        );
    h.run();
    h
}

/// Opens the "Reconstructions (step N)" section and steps until the loader has answered.
fn open_section(h: &mut Harness<'_, MimrApp>) {
    h.get_by_label(&format!("Reconstructions (step {STEP})"))
        .click();
    h.run();
    let start = Instant::now();
    while h
        .query_by_label_contains("loading the reconstructions")
        .is_some()
    {
        assert!(start.elapsed() < Duration::from_secs(30), "never loaded");
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    h.run();
}

#[test]
fn a_pretraining_run_shows_its_reconstructions_once_opened() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), true);
    let mut h = harness(dir.path());
    h.get_by_label(&format!("Reconstructions (step {STEP})"));
    assert!(
        h.query_by_label_contains("reconstructions at step")
            .is_none(),
        "closed at first"
    );
    assert_eq!(
        h.state().reconstruction_loads(),
        0,
        "nothing read while closed"
    );
    open_section(&mut h);
    h.get_by_label("rows: image, visible patches (75 % masked), reconstruction");
    h.get_by_label(&format!("reconstructions at step {STEP} ({W}x{H} px)"));
    // more frames (a pointer move repaints) do not read the file again
    h.hover_at(eframe::egui::pos2(600.0, 400.0));
    h.run();
    assert_eq!(h.state().reconstruction_loads(), 1);
}

#[test]
fn a_missing_reconstructions_file_is_a_message() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), false);
    let mut h = harness(dir.path());
    open_section(&mut h);
    h.get_by_label_contains("Cannot show the reconstructions:");
    assert!(
        h.query_by_label_contains("reconstructions at step")
            .is_none()
    );
}

#[test]
fn an_undecodable_reconstructions_file_is_a_message() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), false);
    std::fs::create_dir(dir.path().join("reconstructions")).unwrap();
    let png = format!("reconstructions/step-{STEP:09}.png");
    std::fs::write(dir.path().join(png), b"not a png").unwrap();
    let mut h = harness(dir.path());
    open_section(&mut h);
    h.get_by_label_contains("not a readable image");
}
