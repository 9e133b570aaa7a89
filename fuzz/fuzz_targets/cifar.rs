//! cargo-fuzz target `cifar`: arbitrary bytes into `mimr::fuzzing::Target::Cifar`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    mimr::fuzzing::Target::Cifar.run(data);
});
