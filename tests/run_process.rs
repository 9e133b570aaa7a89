//! `mimr refine` as a real process against its run directory: SIGKILLed at random moments and
//! re-run until done (bit-identical result, each step logged once), a second process on the same
//! directory refused, and a failing checkpoint write that keeps the previous checkpoint.

mod common;
use mimr::runlog::{self, Event};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A 12-step run (192 samples, batch 32, one epoch per stage), checkpointed every step.
fn refine_cmd(dir: &Path, extra: &[&str]) -> Command {
    let cfg = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/cpu_fashion_mnist.toml");
    let mut sets = vec![
        format!("run.dir=\"{}\"", dir.display()),
        format!("data.train=\"{}\"", common::fashion_mnist().display()),
        "run.device=\"cpu\"".into(),
        "data.workers=2".into(),
        "data.limit=192".into(),
        "data.batch_size=32".into(),
        "stage3.epochs=1".into(),
        "run.log_every=1".into(),
        "heads.queue_size=256".into(),
        "run.checkpoint_every=1".into(),
        "run.keep_checkpoints=2".into(),
        "run.snapshot_every=0".into(),
        "run.probe_size=64".into(),
        "eval.every_epochs=0".into(),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mimr"));
    cmd.args(["refine", "--config", cfg.to_str().unwrap()]);
    for s in &sets {
        cmd.args(["--set", s]);
    }
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn run_to_end(dir: &Path, extra: &[&str]) -> Output {
    let out = refine_cmd(dir, extra).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ema(dir: &Path) -> mimr::host::TensorMap {
    mimr::checkpoint::st::read(&dir.join("encoder_ema.safetensors"))
        .unwrap()
        .tensors
}

/// The steps of the log's step events, after checking that no line is damaged.
fn logged_steps(dir: &Path) -> Vec<u64> {
    let r = runlog::read_all(&dir.join(runlog::FILE)).unwrap();
    assert!(r.notices.is_empty(), "{:?}", r.notices);
    assert!(matches!(r.events.first(), Some(Event::Header(_))));
    let steps = r.events.iter().filter_map(|e| match e {
        Event::Step(s) => Some(s.step),
        _ => None,
    });
    steps.collect()
}

fn wait_for_step(dir: &Path, child: &mut Child) {
    let start = Instant::now();
    while !std::fs::read_to_string(dir.join(runlog::FILE))
        .unwrap_or_default()
        .contains("\"type\":\"step\"")
    {
        assert!(child.try_wait().unwrap().is_none(), "refine exited early");
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "refine did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The newest step event in the log (0 when none).
fn last_logged_step(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join(runlog::FILE)).unwrap_or_default();
    (1..=12)
        .rev()
        .find(|s| text.contains(&format!("\"type\":\"step\",\"step\":{s},")))
        .unwrap_or(0)
}

#[test]
fn sigkill_at_random_moments_then_rerun_gives_the_uninterrupted_result() {
    let whole = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    run_to_end(whole.path(), &[]);
    // an upper bound of one step's time (start-up included)
    let step_time = t0.elapsed() / 12;
    let dir = tempfile::tempdir().unwrap();
    // each kill lands either during start-up or a random fraction of a step after a random
    // later step was logged: inside the next step, its events or its checkpoint write (one
    // checkpoint per step here)
    let mut rng = mimr::rng::Rng::new(7);
    let (mut kills, mut runs) = (0, 0);
    loop {
        runs += 1;
        assert!(runs < 40, "the run never completed");
        let done = last_logged_step(dir.path());
        let mut child = refine_cmd(dir.path(), &[]).spawn().unwrap();
        if kills < 8 && done < 11 {
            if rng.uniform() < 0.25 {
                std::thread::sleep(step_time.mul_f64(rng.uniform() * 2.0));
            } else {
                // a step or two further on, so several kills land before the end
                let target = done + 1 + rng.below(2.min(11 - done) as usize) as u64;
                while last_logged_step(dir.path()) < target && child.try_wait().unwrap().is_none() {
                    std::thread::sleep(Duration::from_millis(2));
                }
                std::thread::sleep(step_time.mul_f64(rng.uniform()));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if String::from_utf8_lossy(&out.stdout).contains("finished after 12 steps") {
            break;
        }
    }
    eprintln!("{kills} SIGKILLs in {runs} runs");
    assert!(
        kills >= 3,
        "only {kills} kills landed; the test proves little"
    );
    assert_eq!(logged_steps(dir.path()), (1..=12).collect::<Vec<_>>());
    let (a, b) = (ema(whole.path()), ema(dir.path()));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in &a {
        assert!(
            v.data == b[k].data,
            "EMA tensor {k} differs after {kills} kills"
        );
    }
    let left: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        left.iter().all(|n| n.starts_with("ckpt-")),
        "leftovers: {left:?}"
    );
}

#[test]
fn a_second_process_on_the_same_run_dir_is_refused_and_the_first_is_unharmed() {
    let dir = tempfile::tempdir().unwrap();
    let long = ["data.limit=4096", "run.checkpoint_every=100000"];
    let mut first = refine_cmd(dir.path(), &long).spawn().unwrap();
    wait_for_step(dir.path(), &mut first);
    let second = refine_cmd(dir.path(), &long).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains(&format!("in use by process {}", first.id())) && err.contains("run.lock"),
        "{err}"
    );
    unsafe { libc::kill(first.id() as i32, libc::SIGINT) };
    let out = first.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let steps = logged_steps(dir.path());
    assert!(!steps.is_empty());
    assert_eq!(steps, (1..=steps.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_failing_checkpoint_write_stops_with_a_message_and_keeps_the_previous_one() {
    let whole = tempfile::tempdir().unwrap();
    run_to_end(whole.path(), &[]);
    let dir = tempfile::tempdir().unwrap();
    run_to_end(dir.path(), &["run.max_steps=2"]);
    let ckpt = dir.path().join("checkpoints/ckpt-000000002");
    let size = std::fs::metadata(ckpt.join("state.safetensors"))
        .unwrap()
        .len();
    // files may not grow past `size - 1` bytes: the next state.safetensors cannot be written
    // (EFBIG, as a full disk would fail it; permissions cannot, tests may run as root)
    let mut cmd = refine_cmd(dir.path(), &[]);
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: size - 1,
                rlim_max: size - 1,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot write checkpoint") && err.contains("ckpt-000000003"),
        "{err}"
    );
    assert!(ckpt.join("state.safetensors").exists());
    // the kept checkpoint resumes and the run ends as if nothing happened
    let out = run_to_end(dir.path(), &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("finished after 12 steps"));
    assert_eq!(logged_steps(dir.path()), (1..=12).collect::<Vec<_>>());
    let (a, b) = (ema(whole.path()), ema(dir.path()));
    for (k, v) in &a {
        assert!(v.data == b[k].data, "EMA tensor {k} differs");
    }
}
