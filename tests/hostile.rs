//! Crafted hostile files (`tools/make_hostile_fixtures.py` → tests/fixtures/hostile/) against the
//! command line: under a 1 GiB address-space limit and a time limit, each gives exit code 1 and a
//! clear error naming the file — never a signal, an abort or a hang.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MEMORY_LIMIT: u64 = 1 << 30;
const TIME_LIMIT: Duration = Duration::from_secs(180);

fn hostile(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hostile")
        .join(name)
        .display()
        .to_string()
}

fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

/// The outcome of one limited run: exit code (None: killed by a signal) and stderr.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs mimr with `args` under `setrlimit(RLIMIT_AS, MEMORY_LIMIT)` and `TIME_LIMIT`. Two rayon
/// threads and two malloc arenas keep the address space a legitimate run needs small.
fn run_limited(args: &[String]) -> Outcome {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mimr"));
    cmd.args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env("MALLOC_ARENA_MAX", "2")
        .env("RUST_BACKTRACE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: MEMORY_LIMIT,
                rlim_max: MEMORY_LIMIT,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("mimr starts");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped")));
    let err = drain(Box::new(child.stderr.take().expect("piped")));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > TIME_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("mimr {args:?} ran past {TIME_LIMIT:?} (hang?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Outcome {
        code: status.code(),
        stdout: out.join().expect("stdout"),
        stderr: err.join().expect("stderr"),
    }
}

/// `mimr args` must exit 1 with an error that names `file` and contains every phrase of `expect`.
fn rejects(args: &[String], file: &str, expect: &[&str]) {
    let o = run_limited(args);
    let err = &o.stderr;
    assert_eq!(
        o.code,
        Some(1),
        "mimr {args:?}: expected exit code 1, got {:?} (None = killed by a signal)\n{err}",
        o.code
    );
    assert!(!err.contains("panicked"), "mimr {args:?} panicked:\n{err}");
    assert!(
        err.contains("error:"),
        "mimr {args:?}: no error line:\n{err}"
    );
    assert!(
        err.contains(file),
        "mimr {args:?}: error does not name {file}:\n{err}"
    );
    for phrase in expect {
        assert!(
            err.to_lowercase().contains(&phrase.to_lowercase()),
            "mimr {args:?}: error lacks `{phrase}`:\n{err}"
        );
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Each crafted checkpoint with what its error must say.
const CHECKPOINTS: &[(&str, &[&str])] = &[
    ("pickle_bomb.pth", &["budget"]),
    ("pickle_deep.pth", &["depth"]),
    ("stride0_view.pth", &["elements"]),
    ("stride_overflow.pth", &["overflow"]),
    ("zip_bomb.pth", &["zip bomb"]),
    ("huge_header.safetensors", &["header"]),
    ("huge_shape.safetensors", &["shape", "data_offsets"]),
];

#[test]
fn info_rejects_every_crafted_checkpoint() {
    for (file, expect) in CHECKPOINTS {
        rejects(&strings(&["info", &hostile(file)]), file, expect);
    }
}

#[test]
fn embed_and_eval_reject_every_crafted_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let images = hostile("images");
    let out = tmp.path().join("out");
    let fmnist = repo("assets/fashion-mnist");
    for (file, expect) in CHECKPOINTS {
        let ckpt = hostile(file);
        let embed = [
            "embed",
            &ckpt,
            "--images",
            &images,
            "--device",
            "cpu",
            "--out",
            &out.join("f.safetensors").display().to_string(),
        ];
        rejects(&strings(&embed), file, expect);
        let eval = [
            "eval",
            &ckpt,
            "--data",
            &fmnist,
            "--device",
            "cpu",
            "--out",
            &out.display().to_string(),
        ];
        rejects(&strings(&eval), file, expect);
    }
}

#[test]
fn refine_rejects_a_crafted_model_checkpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (file, expect) in CHECKPOINTS.iter().take(3) {
        let run = tmp.path().join(file.replace('.', "_"));
        let args = [
            "refine",
            "--config",
            &repo("configs/demo.toml"),
            "--set",
            &format!("model.checkpoint=\"{}\"", hostile(file)),
            "--set",
            &format!("run.dir=\"{}\"", run.display()),
            "--set",
            "run.device=\"cpu\"",
        ];
        rejects(&strings(&args), file, expect);
    }
}

/// Each crafted dataset (a folder) with the file its error must name and what it must say.
const DATASETS: &[(&str, &str, &[&str])] = &[
    ("idx_huge", "train-images-idx3-ubyte", &["file has 16"]),
    (
        "idx_gzip_bomb",
        "train-images-idx3-ubyte.gz",
        &["decompress"],
    ),
    ("cifar_ragged", "data_batch_1.bin", &["3073"]),
];

#[test]
fn data_stats_and_eval_reject_every_crafted_dataset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let model = repo("assets/demo_mae.safetensors");
    for (dir, file, expect) in DATASETS {
        let data = hostile(dir);
        rejects(&strings(&["data", "stats", &data]), file, expect);
        let out = tmp.path().join(dir).display().to_string();
        let eval = [
            "eval", &model, "--data", &data, "--device", "cpu", "--out", &out,
        ];
        rejects(&strings(&eval), file, expect);
    }
}

#[test]
fn an_image_claiming_huge_dimensions_is_counted_corrupt() {
    let o = run_limited(&strings(&["data", "stats", "--check", &hostile("images")]));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    let report = format!("{}{}", o.stdout, o.stderr);
    assert!(report.contains("corrupt: 1"), "{report}");
    assert!(report.contains("huge.png"), "{report}");
    assert!(!report.contains("ok.png"), "{report}");
}

#[test]
fn fixtures_are_the_ones_the_script_makes() {
    // the script is the source of the fixtures: every file it lists exists here
    let script = std::fs::read_to_string(repo("tools/make_hostile_fixtures.py")).expect("script");
    for (file, _) in CHECKPOINTS {
        assert!(script.contains(file), "{file} is not made by the script");
        assert!(PathBuf::from(hostile(file)).is_file(), "{file} missing");
    }
    for (dir, file, _) in DATASETS {
        assert!(script.contains(dir), "{dir} is not made by the script");
        let has = std::fs::read_dir(hostile(dir))
            .expect("dataset dir")
            .any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy() == *file));
        assert!(has, "{dir}/{file} missing");
    }
}
