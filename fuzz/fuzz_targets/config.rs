//! cargo-fuzz target `config`: arbitrary bytes into `mimr::fuzzing::Target::Config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Config.run(data);
});
