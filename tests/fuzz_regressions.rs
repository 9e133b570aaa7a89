//! Replays every committed fuzzing finding (fuzz/regressions/<target>/*) and the seed inputs of
//! every fuzz target on stable: each must return (accepted or rejected) without a panic.

use mimr::fuzzing::Target;
use std::path::Path;

fn regressions(target: Target) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target.name());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).expect("regression file reads");
            (p.display().to_string(), bytes)
        })
        .collect()
}

#[test]
fn every_committed_regression_input_is_handled() {
    let mut n = 0;
    for target in Target::ALL {
        for (name, bytes) in regressions(target) {
            // a panic here fails the test and names the input through the panic message
            let accepted = std::panic::catch_unwind(|| target.run(&bytes));
            assert!(accepted.is_ok(), "{} panicked on {name}", target.name());
            n += 1;
        }
    }
    eprintln!("{n} regression inputs replayed");
}

#[test]
fn fuzz_targets_accept_their_valid_seeds() {
    // each target's harness reaches the parser: a valid input is accepted, garbage is not
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let pth = std::fs::read(fixtures.join("refined_prenorm.th")).expect("fixture");
    let st = std::fs::read(fixtures.join("timm_layerscale.safetensors")).expect("fixture");
    assert!(Target::Checkpoint.run(&pth));
    assert!(Target::Safetensors.run(&st));
    assert!(Target::Pickle.run(b"\x80\x02}q\x00."));
    assert!(Target::Runlog.run(b""));
    for target in Target::ALL {
        assert!(
            !target.run(b"\x00garbage"),
            "{} accepted garbage",
            target.name()
        );
    }
    // {'w': _rebuild_tensor_v2(storage '2' (16 floats), offset 1, shape (3, 4), stride (4, 1))}
    let view = b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n(\
        (X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x002\
        X\x03\x00\x00\x00cpuK\x10tQK\x01(K\x03K\x04t(K\x04K\x01t\x89}tRs.";
    assert!(Target::TorchZip.run(view));
    let past_end = [&view[..view.len() - 12], b"(K\x08K\x01t\x89}tRs."].concat(); // stride (8, 1)
    assert!(
        !Target::TorchZip.run(&past_end),
        "a view past its storage's end"
    );
    let cifar = [0u8; 3073];
    assert!(Target::Cifar.run(&cifar));
    let mut idx = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2];
    idx.extend([0u8; 8]);
    assert!(Target::Idx.run(&idx));
}
