//! A real app window: `mimr view` on the recorded run under Xvfb (Linux; the wgpu renderer on
//! whatever Vulkan/GL adapter exists, lavapipe in CI) saves a screenshot of itself and exits; the
//! screenshot must show the app's heat map, not a blank frame.

use std::path::Path;
use std::process::Command;

#[test]
fn mimr_view_opens_a_window_and_draws_the_run() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_small");
    let out = tempfile::tempdir().unwrap();
    let shot = out.path().join("window.png");
    let mimr = env!("CARGO_BIN_EXE_mimr");
    let mut cmd = if cfg!(target_os = "linux") {
        let found = Command::new("xvfb-run").arg("--help").output().is_ok();
        assert!(
            found,
            "xvfb-run is missing: apt-get install xvfb xauth (.ci/run does)"
        );
        let mut c = Command::new("xvfb-run");
        c.args(["-a", "-s", "-screen 0 1280x820x24", mimr]);
        c
    } else {
        Command::new(mimr)
    };
    cmd.arg("view").arg(&fixture).arg("--tab").arg("layers");
    cmd.arg("--screenshot").arg(&shot);
    // a fresh config dir, so no state from an earlier launch is restored
    cmd.env("XDG_DATA_HOME", out.path()).env("HOME", out.path());
    let o = cmd.output().unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let img = image::open(&shot).unwrap_or_else(|e| panic!("no screenshot ({e}): {log}"));
    assert!(
        img.width() >= 640 && img.height() >= 400,
        "{}×{}",
        img.width(),
        img.height()
    );
    // the Layers tab's heat map is drawn: many pixels carry a viridis colour of its cells
    let ramp: std::collections::HashSet<[u8; 3]> = (0..=1000)
        .map(|i| mimr::app::palette::viridis(i as f64 / 1000.0).to_array())
        .map(|[r, g, b, _]| [r, g, b])
        .collect();
    let rgb = img.to_rgb8();
    let cells = rgb.pixels().filter(|p| ramp.contains(&p.0)).count();
    assert!(
        cells > 2000,
        "no heat map in the window: {cells} viridis pixels"
    );
}
