//! cargo-fuzz target `pickle`: arbitrary bytes into `mimr::fuzzing::Target::Pickle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Pickle.run(data);
});
