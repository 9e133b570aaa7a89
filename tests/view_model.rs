//! The viewer's run model on logs written by the real `RunLog` writer: replay, a live run read
//! while it is written, damaged lines, a rewritten log and a newer major version.

use mimr::runlog::{
    EvalEvent, EvalHead, EvalSamples, Event, HeadStep, Header, NnExamples, NnPair, RunKind, RunLog,
    Snapshot, StepEvent, Thumbnails, read_all,
};
use mimr::view::{
    DirSource, FileKind, HeadMetric, LiveRun, MetricKey, Notice, RunMetric, RunModel, RunSource,
    RunState, SourceItem, Tap, XAxis, points,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// 5 steps per epoch, 1 + 1 epochs, batch 4.
const SPE: u64 = 5;
const TOTAL: u64 = 10;

fn header() -> Header {
    Header {
        version: 0,
        minor: 0,
        kind: RunKind::Refine,
        config: serde_json::json!({
            "data": {"batch_size": 4},
            "stage2": {"epochs": 1},
            "stage3": {"epochs": 1},
            "run": {"max_steps": 0, "log_every": 1}
        }),
        heads: vec!["cls1".into(), "main".into()],
        dataset: "synthetic".into(),
        device: "cpu".into(),
        encoder: serde_json::json!({"depth": 2, "dim": 16}),
    }
}

fn head_step(s: u64, labelled: bool) -> HeadStep {
    HeadStep {
        loss: 10.0 - s as f64,
        nn_similarity: 0.1 * s as f64,
        nn_accuracy: labelled.then_some(0.05 * s as f64),
        global_alignment: 0.5,
        local_alignment: 0.25,
    }
}

fn step(s: u64) -> Event {
    let heads = BTreeMap::from([
        ("main".to_string(), head_step(s, true)),
        ("cls1".to_string(), head_step(s, false)),
    ]);
    Event::Step(StepEvent {
        step: s,
        epoch: (s - 1) / SPE,
        stage: if s <= SPE { 2 } else { 3 },
        lr: 1e-3 * s as f64,
        img_per_s: 2.0,
        time: None,
        heads,
    })
}

fn eval(s: u64) -> Event {
    let knn = |v: Option<f64>| Some(BTreeMap::from([("k10".to_string(), v)]));
    let heads = BTreeMap::from([
        (
            "main".to_string(),
            EvalHead {
                knn: knn(Some(0.5 + 0.01 * s as f64)),
                ..EvalHead::default()
            },
        ),
        (
            "cls1".to_string(),
            EvalHead {
                block: Some(1),
                knn: knn((s > 0).then_some(0.4)),
                ..EvalHead::default()
            },
        ),
    ]);
    Event::Eval(EvalEvent {
        step: s,
        encoder: Default::default(),
        epoch: s as f64 / SPE as f64,
        split: "test".into(),
        samples: EvalSamples {
            bank: 20,
            queries: 10,
            skipped: 0,
        },
        heads,
    })
}

/// Every event of a complete run, in the order the trainer writes them (after the header).
fn run_events(dir: &Path) -> Vec<Event> {
    std::fs::create_dir_all(dir.join("snapshots")).unwrap();
    std::fs::write(dir.join("thumbnails.png"), b"png").unwrap();
    let mut v = vec![
        Event::Thumbnails(Thumbnails {
            image: "thumbnails.png".into(),
            index: "thumbnails.json".into(), // not written: a missing-file notice
            samples: 4,
            tile: 8,
        }),
        eval(0),
    ];
    for s in 1..=TOTAL {
        v.push(step(s));
        v.push(Event::NnExamples(NnExamples {
            step: s,
            heads: BTreeMap::from([(
                "main".to_string(),
                vec![NnPair {
                    sample: s as usize,
                    neighbour: 7,
                    same_label: Some(s % 2 == 0),
                }],
            )]),
            thumbnails: None,
        }));
        if s % SPE == 0 {
            let file = format!("snapshots/step-{s:09}.safetensors");
            std::fs::write(dir.join(&file), b"st").unwrap();
            v.push(Event::Snapshot(Snapshot {
                step: s,
                file,
                samples: 4,
                skipped: 0,
            }));
            v.push(eval(s));
        }
    }
    v.push(Event::End { step: TOTAL });
    v
}

fn write_run(dir: &Path) {
    let events = run_events(dir);
    let mut log = RunLog::open(dir, None, header()).unwrap();
    for e in &events {
        log.write(e).unwrap();
    }
}

/// Polls until a poll brings nothing new.
fn replay(source: &mut DirSource) -> RunModel {
    let mut m = RunModel::default();
    loop {
        let items = source.poll();
        if items.is_empty() {
            return m;
        }
        m.extend(items);
    }
}

fn append(path: &Path, bytes: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

#[test]
fn a_replayed_run_gives_every_step_once_in_order_and_what_the_panels_need() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path());
    let m = replay(&mut DirSource::new(dir.path()));

    let steps = m.steps();
    assert_eq!(steps.timeline().steps(), (1..=TOTAL).collect::<Vec<_>>());
    let loss = steps.head("main", HeadMetric::Loss).unwrap();
    assert_eq!(
        loss,
        (1..=TOTAL).map(|s| 10.0 - s as f64).collect::<Vec<_>>()
    );
    let acc = steps.head("cls1", HeadMetric::NnAccuracy).unwrap();
    assert!(acc.iter().all(|v| v.is_nan()), "unlabelled: absent");
    assert_eq!(steps.run(RunMetric::Lr)[2], 3e-3);
    assert_eq!(steps.run(RunMetric::Loss)[0], 18.0, "sum over heads");
    let epochs = points(steps.timeline(), loss, XAxis::Epoch, 0.0);
    assert_eq!(epochs[0], [0.2, 9.0], "step / steps-per-epoch");
    let wall = points(steps.timeline(), loss, XAxis::WallTime, 0.0);
    assert_eq!(wall.last().unwrap()[0], TOTAL as f64 * 4.0 / 2.0);

    let info = m.info().unwrap();
    assert_eq!(
        (info.version, info.minor),
        (mimr::runlog::VERSION, mimr::runlog::MINOR)
    );
    assert_eq!((info.dataset.as_str(), info.depth), ("synthetic", Some(2)));
    assert_eq!(m.steps_per_epoch(), Some(SPE));
    let p = m.progress();
    assert_eq!(p.state, RunState::Completed { step: TOTAL });
    assert_eq!((p.step, p.total, p.stage), (TOTAL, Some(TOTAL), Some(3)));
    assert_eq!(p.img_per_s, Some(2.0));

    let h = m.knn_heat_map(10);
    let rows: Vec<Tap> = h.rows.iter().map(|r| r.1).collect();
    assert_eq!(rows, vec![Tap::Block(1), Tap::Output]);
    assert_eq!(h.steps, vec![0, 5, 10]);
    assert_eq!(h.get(0, 0), None, "null at step 0");
    assert_eq!(h.get(0, 1), Some(0.4));
    assert_eq!(h.get(1, 2), Some(0.6));
    let curve = m.evals().values("main", &MetricKey::knn(10));
    assert_eq!(curve.len(), 3);

    let snaps: Vec<u64> = m.snapshots().iter().map(|s| s.step).collect();
    assert_eq!(snaps, vec![5, 10]);
    assert_eq!(m.nn_examples().unwrap().step, TOTAL);
    assert_eq!(m.thumbnails().unwrap().samples, 4);
    assert_eq!(
        m.notices(),
        &[Notice::MissingFile {
            kind: FileKind::ThumbnailIndex,
            path: "thumbnails.json".into(),
            reason: "not found".into()
        }]
    );
}

#[test]
fn a_live_run_delivers_every_event_exactly_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let events = run_events(&path);
    let (repaints_tx, repaints) = std::sync::mpsc::channel();
    // the log does not exist yet: the reader notices that once and keeps polling
    let live = LiveRun::spawn(DirSource::new(&path), Duration::from_millis(5), move || {
        let _ = repaints_tx.send(());
    })
    .unwrap();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        let mut log = RunLog::open(&path, None, header()).unwrap();
        for e in &events {
            log.write(e).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let (mut got, mut model) = (Vec::new(), RunModel::default());
    let deadline = Instant::now() + Duration::from_secs(30);
    while model.end().is_none() && Instant::now() < deadline {
        let items = live.drain();
        for i in &items {
            if let SourceItem::Event { event, .. } = i {
                got.push(event.clone());
            }
        }
        model.extend(items);
        std::thread::sleep(Duration::from_millis(3));
    }
    writer.join().unwrap();
    assert!(repaints.try_iter().count() > 0, "repaint requested");
    let want = read_all(&dir.path().join(mimr::runlog::FILE))
        .unwrap()
        .events;
    assert_eq!(got, want);
    assert_eq!(
        model.steps().timeline().steps(),
        (1..=TOTAL).collect::<Vec<_>>()
    );
    let log_missing = |n: &Notice| {
        matches!(
            n,
            Notice::MissingFile {
                kind: FileKind::Log,
                ..
            }
        )
    };
    // the log did not exist when the follower started: that is waiting, not a notice
    assert_eq!(model.notices().iter().filter(|n| log_missing(n)).count(), 0);
    assert!(live.is_polling(), "a live run keeps being polled");
    drop(live); // stops and joins the thread
}

#[test]
fn damaged_and_truncated_lines_become_notices_and_the_rest_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::open(dir.path(), None, header()).unwrap();
    log.write(&step(1)).unwrap();
    let p = dir.path().join(mimr::runlog::FILE);
    let line = serde_json::to_string(&step(2)).unwrap();
    // a line cut short (a crash mid-write, then more appended) and a line of garbage bytes
    append(&p, format!("{}\n", &line[..line.len() / 2]).as_bytes());
    append(&p, b"\xff\xfe{not json\n");
    log.write(&step(3)).unwrap();
    let mut source = DirSource::new(dir.path());
    let m = replay(&mut source);
    assert_eq!(m.steps().timeline().steps(), &[1, 3]);
    let lines: Vec<u64> = m
        .notices()
        .iter()
        .filter_map(|n| match n {
            Notice::SkippedLine { line, .. } => Some(*line),
            _ => None,
        })
        .collect();
    assert_eq!(lines, vec![3, 4]);
    assert_eq!(m.state(), RunState::InProgress);
}

#[test]
fn a_rewritten_log_resets_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = RunLog::open(dir.path(), None, header()).unwrap();
    for s in 1..=4 {
        log.write(&step(s)).unwrap();
    }
    let keep = {
        let text = std::fs::read_to_string(log.path()).unwrap();
        text.lines()
            .take(3)
            .map(|l| l.len() as u64 + 1)
            .sum::<u64>()
    };
    let mut source = DirSource::new(dir.path());
    let mut m = replay(&mut source);
    assert_eq!(m.steps().len(), 4);
    drop(log);
    // a resume cuts the log back to step 2's end and writes steps 3.. again, other timings
    let mut log = RunLog::open(dir.path(), Some(keep), header()).unwrap();
    for s in 3..=6 {
        let Event::Step(mut e) = step(s) else {
            unreachable!()
        };
        e.img_per_s = 3.0;
        log.write(&Event::Step(e)).unwrap();
    }
    m.extend(source.poll());
    assert_eq!(m.notices(), &[Notice::Rewritten]);
    assert_eq!(m.steps().timeline().steps(), &[1, 2, 3, 4, 5, 6]);
    assert_eq!(m.steps().run(RunMetric::ImgPerS)[2], 3.0);
    assert!(m.info().is_some());
}

#[test]
fn a_newer_major_version_is_a_notice_and_nothing_more_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join(mimr::runlog::FILE);
    std::fs::write(
        &p,
        "{\"type\":\"header\",\"version\":2,\"heads\":{\"new\":\"shape\"}}\n",
    )
    .unwrap();
    append(
        &p,
        format!("{}\n", serde_json::to_string(&step(1)).unwrap()).as_bytes(),
    );
    let live = LiveRun::spawn(DirSource::new(dir.path()), Duration::from_millis(5), || {}).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while live.is_polling() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!live.is_polling(), "the thread ends on a refused log");
    let mut m = RunModel::default();
    live.drain_into(&mut m);
    assert_eq!(m.state(), RunState::Refused);
    assert!(m.steps().is_empty());
    let [Notice::Refused { message }] = m.notices() else {
        panic!("{:?}", m.notices())
    };
    assert!(
        message.contains("version 2") && message.contains("update mimr"),
        "{message}"
    );
    assert!(m.progress().eta_seconds.is_none());
}
