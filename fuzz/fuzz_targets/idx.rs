//! cargo-fuzz target `idx`: arbitrary bytes into `mimr::fuzzing::Target::Idx`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Idx.run(data);
});
