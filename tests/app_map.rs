//! The embedding map and the nearest-neighbour inspector on a recorded run (tests/fixtures/run_small):
//! the worker's answers and the app's clicks are checked against a brute-force cosine search over
//! the snapshot files read independently (safetensors crate, f64).

use eframe::egui;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use mimr::app::map::Drawn;
use mimr::app::runs::OpenRun;
use mimr::app::{MimrApp, Tab};
use mimr::view::DirSource;
use mimr::view::embedding::{MapWorker, Method, Reply, Request, SnapshotRef};
use mimr::view::files::{DirFiles, RunFiles};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run_small")
}

fn snapshots() -> Vec<SnapshotRef> {
    let mut v: Vec<SnapshotRef> = std::fs::read_dir(fixture().join("snapshots"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let step = name["step-".len().."step-".len() + 9].parse().unwrap();
            SnapshotRef {
                step,
                file: format!("snapshots/{name}"),
                name: format!("step {step}"),
            }
        })
        .collect();
    v.sort_by_key(|s| s.step);
    v
}

/// (rows of `block`, labels, index) of a snapshot file, read with the safetensors crate.
fn read_block(file: &str, block: &str) -> (Vec<Vec<f64>>, Vec<f32>, Vec<usize>) {
    let bytes = std::fs::read(fixture().join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let f32s = |name: &str| -> (Vec<f32>, Vec<usize>) {
        let t = st.tensor(name).unwrap();
        let v = t
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        (v, t.shape().to_vec())
    };
    let (x, shape) = f32s(block);
    let rows = x
        .chunks_exact(shape[1])
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect();
    let (labels, _) = f32s("labels");
    let index = f32s("index").0.iter().map(|&v| v as usize).collect();
    (rows, labels, index)
}

/// The `k` dataset indices most cosine-similar to sample `query` (itself excluded).
fn brute_force(file: &str, block: &str, query: usize, k: usize) -> Vec<usize> {
    let (rows, _, index) = read_block(file, block);
    let q = index.iter().position(|&i| i == query).unwrap();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let cos = |a: &[f64], b: &[f64]| {
        a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>() / (norm(a) * norm(b))
    };
    let mut sims: Vec<(usize, f64)> = (0..rows.len())
        .filter(|&r| r != q)
        .map(|r| (index[r], cos(&rows[q], &rows[r])))
        .collect();
    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    sims.into_iter().take(k).map(|(i, _)| i).collect()
}

fn wait_for(worker: &MapWorker, mut want: impl FnMut(&Reply) -> bool) -> Vec<Reply> {
    let start = Instant::now();
    let mut got = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        for r in worker.drain() {
            let done = want(&r);
            got.push(r);
            if done {
                return got;
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("the worker did not answer within 60 s");
}

#[test]
fn the_worker_projects_every_snapshot_and_finds_the_brute_force_neighbours() {
    let worker = fixture_worker();
    let snaps = snapshots();
    assert_eq!(snaps.len(), 4, "the fixture has four snapshots");
    let got = pca_of_every_snapshot(&worker, "cls1", &snaps);
    let steps: Vec<u64> = got
        .iter()
        .filter_map(|r| match r {
            Reply::Projection { step, points, .. } => {
                assert_eq!(points.xy.len(), 64, "every probe sample drawn");
                Some(*step)
            }
            _ => None,
        })
        .collect();
    assert_eq!(steps, snaps.iter().map(|s| s.step).collect::<Vec<_>>());

    let (query, k) = (5, 7);
    worker.send(Request::Neighbours {
        query,
        blocks: vec!["cls0".into(), "cls1".into()],
        snapshots: vec![snaps[0].clone(), snaps[3].clone()],
        k,
    });
    let got = wait_for(&worker, |r| matches!(r, Reply::Neighbours { .. }));
    let Some(Reply::Neighbours { lists, .. }) = got.last() else {
        unreachable!()
    };
    assert_eq!(lists.len(), 4, "two blocks at two steps");
    for l in lists {
        let file = &snaps.iter().find(|s| s.step == l.step).unwrap().file;
        let found: Vec<usize> = l.list.as_ref().unwrap().iter().map(|n| n.index).collect();
        assert_eq!(
            found,
            brute_force(file, &l.block, query, k),
            "{} @ {}",
            l.block,
            l.step
        );
        let (_, labels, index) = read_block(file, &l.block);
        for n in l.list.as_ref().unwrap() {
            let r = index.iter().position(|&i| i == n.index).unwrap();
            assert_eq!(n.label, Some(labels[r] as u32));
        }
    }
}

#[test]
fn the_pca_of_later_steps_is_aligned_to_the_step_before() {
    let worker = fixture_worker();
    let snaps = snapshots();
    let got = pca_of_every_snapshot(&worker, "cls0", &snaps);
    let xy: Vec<Vec<[f32; 2]>> = got
        .iter()
        .filter_map(|r| match r {
            Reply::Projection { points, .. } => Some(points.xy.clone()),
            _ => None,
        })
        .collect();
    // an aligned step is closer to its predecessor than the plain PCA of the same features
    for w in 1..xy.len() {
        let (rows, _, _) = read_block(&snaps[w].file, "cls0");
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        let dim = rows[0].len();
        let raw = mimr::view::project::pca2(
            &mimr::view::project::Features::new(rows.len(), dim, flat).unwrap(),
        );
        let dist = |a: &[[f32; 2]]| -> f64 {
            a.iter()
                .zip(&xy[w - 1])
                .map(|(p, q)| ((p[0] - q[0]) as f64).powi(2) + ((p[1] - q[1]) as f64).powi(2))
                .sum()
        };
        assert!(
            dist(&xy[w]) <= dist(&raw) + 1e-9,
            "step {}: aligned {} vs plain {}",
            snaps[w].step,
            dist(&xy[w]),
            dist(&raw)
        );
        let expected = mimr::view::project::align(&xy[w - 1], &raw);
        for (a, b) in xy[w].iter().zip(&expected) {
            assert!((a[0] - b[0]).abs() < 1e-4 && (a[1] - b[1]).abs() < 1e-4);
        }
    }
}

/// Steps the harness until `done` holds (the map's worker runs on its own thread).
fn step_until(h: &mut Harness<'_, MimrApp>, what: &str, done: impl Fn(&MimrApp) -> bool) {
    let start = Instant::now();
    while !done(h.state()) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
        h.step();
    }
    h.step();
}

/// Asks for the PCA of `block` at every snapshot; the replies up to the last step's.
fn pca_of_every_snapshot(worker: &MapWorker, block: &str, snaps: &[SnapshotRef]) -> Vec<Reply> {
    worker.send(Request::Project {
        block: block.into(),
        method: Method::Pca,
        snapshots: snaps.to_vec(),
        focus: 0,
    });
    let last = snaps.last().unwrap().step;
    wait_for(
        worker,
        |r| matches!(r, Reply::Projection { step, .. } if *step == last),
    )
}

/// A map worker over the fixture run's files.
fn fixture_worker() -> MapWorker {
    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(fixture()));
    MapWorker::spawn(files, || {}).unwrap()
}

/// The app on the fixture run, on the map tab, once its points are drawn.
fn map_harness() -> Harness<'static, MimrApp> {
    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(fixture()));
    let run = OpenRun::from_source(Box::new(DirSource::new(fixture())), Some(files));
    let mut h = Harness::builder()
        .with_size([1280.0, 820.0])
        .build_ui_state(
            |ui, app: &mut MimrApp| app.frame(ui),
            MimrApp::with_runs(vec![run]),
        );
    h.step();
    h.get_by_label("Map").click();
    step_until(&mut h, "the map's points", |a| {
        !a.runs()[0].map.drawn().is_empty()
    });
    h
}

/// Opens the combo box `combo` and picks `item`.
fn choose(h: &mut Harness<'_, MimrApp>, combo: &str, item: &str) {
    h.get_by_label(combo).click();
    for _ in 0..3 {
        h.step();
    }
    h.get_by_label(item).click();
    h.step();
}

/// A primary click at `pos` (press and release over two frames).
fn click(h: &mut Harness<'_, MimrApp>, pos: egui::Pos2) {
    h.hover_at(pos);
    h.step();
    h.drag_at(pos);
    h.step();
    h.event(egui::Event::PointerButton {
        pos,
        button: egui::PointerButton::Primary,
        pressed: false,
        modifiers: egui::Modifiers::NONE,
    });
    h.step();
}

#[test]
fn clicking_a_point_lists_its_brute_force_neighbours_in_the_inspector() {
    let mut h = map_harness();
    assert_eq!(h.state().tab(), Tab::Map);
    let map = &h.state().runs()[0].map;
    assert_eq!(
        map.block.as_deref(),
        Some("main"),
        "the encoder output first"
    );
    assert_eq!(
        map.blocks(),
        ["cls0", "cls1", "main"],
        "blocks in order, then the output"
    );
    // switch block and projection through their combo boxes
    choose(&mut h, "block", "cls0");
    choose(&mut h, "projection", "t-SNE");
    let want = Drawn {
        block: "cls0".into(),
        method: Method::Tsne,
        step: 32,
        running: false,
    };
    step_until(&mut h, "the finished t-SNE of cls0", |a| {
        a.runs()[0].map.last_drawn() == Some(&want)
    });
    assert_eq!(h.state().map_settings().method, Method::Tsne);
    let map = &h.state().runs()[0].map;
    let query = map.drawn()[10];
    let pos = map.screen_pos(query).unwrap();
    click(&mut h, pos);
    step_until(&mut h, "the neighbours", |a| {
        a.runs()[0]
            .map
            .neighbours
            .as_ref()
            .is_some_and(|n| n.query == query)
    });
    let snaps = snapshots();
    let answer = h.state().runs()[0].map.neighbours.clone().unwrap();
    assert_eq!(answer.k, 8, "the default k");
    for l in &answer.lists {
        let file = &snaps.iter().find(|s| s.step == l.step).unwrap().file;
        let found: Vec<usize> = l.list.as_ref().unwrap().iter().map(|n| n.index).collect();
        assert_eq!(found, brute_force(file, "cls0", query, 8));
        let sims: Vec<f32> = l
            .list
            .as_ref()
            .unwrap()
            .iter()
            .map(|n| n.similarity)
            .collect();
        // each neighbour is on screen with its rank, index and similarity
        for (rank, (i, s)) in found.iter().zip(&sims).enumerate() {
            let text = format!("{}. #{i} {s:.3}", rank + 1);
            assert!(
                h.get_all_by_label(&text).next().is_some(),
                "{text} on screen"
            );
        }
    }
    let steps: Vec<u64> = answer.lists.iter().map(|l| l.step).collect();
    assert_eq!(
        steps,
        [snaps[0].step, snaps[3].step],
        "first and shown snapshot"
    );
    // the query's own heading ("sample #N" then its class; thumbnails are named "sample #N")
    let heading = format!("sample #{query}\n");
    let headings = h.get_all_by_label_contains(&heading).count();
    assert_eq!(headings, 1, "the inspector names the query");
}

#[test]
fn a_shift_drag_box_selects_the_points_inside_it_into_the_image_grid() {
    let mut h = map_harness();
    let map = &h.state().runs()[0].map;
    let pos: Vec<(usize, egui::Pos2)> = map
        .drawn()
        .into_iter()
        .map(|i| (i, map.screen_pos(i).unwrap()))
        .collect();
    // a box from beyond the top-left point to the median x: the left half
    let mut xs: Vec<f32> = pos.iter().map(|(_, p)| p.x).collect();
    xs.sort_by(f32::total_cmp);
    let mid = (xs[xs.len() / 2 - 1] + xs[xs.len() / 2]) / 2.0;
    let top = pos.iter().map(|(_, p)| p.y).fold(f32::INFINITY, f32::min) - 3.0;
    let bottom = pos
        .iter()
        .map(|(_, p)| p.y)
        .fold(f32::NEG_INFINITY, f32::max)
        + 3.0;
    let (a, b) = (egui::pos2(xs[0] - 3.0, top), egui::pos2(mid, bottom));
    let mut expected: Vec<usize> = (pos.iter())
        .filter(|(_, p)| p.x <= mid)
        .map(|(i, _)| *i)
        .collect();
    h.event(egui::Event::ModifiersChanged(egui::Modifiers::SHIFT));
    h.hover_at(a);
    h.step();
    let press = |h: &mut Harness<'_, MimrApp>, pos, pressed| {
        h.event(egui::Event::PointerButton {
            pos,
            button: egui::PointerButton::Primary,
            pressed,
            modifiers: egui::Modifiers::SHIFT,
        });
        h.step();
    };
    press(&mut h, a, true);
    for t in [0.25, 0.5, 0.75, 1.0] {
        h.hover_at(a + (b - a) * t);
        h.step();
    }
    press(&mut h, b, false);
    h.event(egui::Event::ModifiersChanged(egui::Modifiers::NONE));
    h.step();
    let mut got = h.state().runs()[0].map.selection.clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "the samples left of the box's right edge");
    h.get_by_label(&format!("{} selected", expected.len()));
}

#[test]
fn the_gpu_draws_every_point_in_its_label_colour() {
    use egui_kittest::wgpu::{WgpuTestRenderer, create_render_state, default_wgpu_setup};
    let rs = create_render_state(
        default_wgpu_setup(),
        eframe::egui_wgpu::RendererOptions::PREDICTABLE,
    );
    mimr::app::points::install(&rs);
    let files: Arc<dyn RunFiles> = Arc::new(DirFiles::new(fixture()));
    let run = OpenRun::from_source(Box::new(DirSource::new(fixture())), Some(files));
    let mut h = Harness::builder()
        .with_size([1000.0, 700.0])
        .renderer(WgpuTestRenderer::from_render_state(rs))
        .build_ui_state(
            |ui, app: &mut MimrApp| app.frame(ui),
            MimrApp::with_runs(vec![run]),
        );
    h.step();
    h.get_by_label("Map").click();
    step_until(&mut h, "the map's points", |a| {
        !a.runs()[0].map.drawn().is_empty()
    });
    let img = h
        .render()
        .expect("renders on the wgpu adapter (lavapipe here)");
    let (_, labels, index) = read_block(&snapshots()[3].file, "main");
    let map = &h.state().runs()[0].map;
    let drawn = map.drawn();
    let ppp = img.width() as f32 / 1000.0;
    let matching = drawn
        .iter()
        .filter(|&&i| {
            let pos = map.screen_pos(i).unwrap() * ppp;
            let label = labels[index.iter().position(|&j| j == i).unwrap()] as usize;
            let want = mimr::app::palette::category(label);
            let px = img.get_pixel(pos.x as u32, pos.y as u32).0;
            (0..3).all(|c| (px[c] as i32 - want[c] as i32).abs() <= 12)
        })
        .count();
    // overlapping dots may hide a few; egui_plot alone draws only the ten legend carriers
    assert!(
        matching * 10 >= drawn.len() * 8,
        "{matching} of {} points show their label's colour",
        drawn.len()
    );
}

#[test]
fn a_newer_request_cancels_an_outdated_tsne_and_the_newer_one_finishes() {
    let worker = fixture_worker();
    let snaps = snapshots();
    let ask = |focus: u64| Request::Project {
        block: "cls0".into(),
        method: Method::Tsne,
        snapshots: snaps.clone(),
        focus,
    };
    worker.send(ask(snaps[0].step));
    worker.send(ask(snaps[1].step));
    let (first, second) = (snaps[0].step, snaps[1].step);
    let got = wait_for(
        &worker,
        |r| matches!(r, Reply::Projection { step, running: None, .. } if *step == second),
    );
    let cancelled = got.iter().any(
        |r| matches!(r, Reply::Cancelled { block, step } if block == "cls0" && *step == first),
    );
    assert!(cancelled, "the outdated t-SNE is reported cancelled");
    let finished_first = got
        .iter()
        .any(|r| matches!(r, Reply::Projection { step, running: None, .. } if *step == first));
    assert!(!finished_first, "the outdated t-SNE never completes");
}
