//! cargo-fuzz target `runlog`: arbitrary bytes into `mimr::fuzzing::Target::Runlog`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Runlog.run(data);
});
