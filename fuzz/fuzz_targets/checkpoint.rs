//! cargo-fuzz target `checkpoint`: arbitrary bytes into `mimr::fuzzing::Target::Checkpoint`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Checkpoint.run(data);
});
