//! cargo-fuzz target `safetensors`: arbitrary bytes into `mimr::fuzzing::Target::Safetensors`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Safetensors.run(data);
});
