//! cargo-fuzz target `torch_zip`: arbitrary bytes into `mimr::fuzzing::Target::TorchZip`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::TorchZip.run(data);
});
