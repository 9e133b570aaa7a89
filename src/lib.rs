//! mimr — MIM-Refiner in Rust: load masked-image-modeling ViTs exactly, tap their blocks, and
//! refine them with nearest-neighbour alignment. See ARCHITECTURE.md for the data flow.

pub mod app;
pub mod checkpoint;
pub mod cli;
pub mod data;
pub mod device;
pub mod dist;
pub mod eval;
pub mod fsutil;
pub mod fuzzing;
pub mod host;
pub mod images;
pub mod inspect;
pub mod model;
pub mod pretrain;
pub mod progress;
pub mod refine;
pub mod rng;
pub mod runlog;
pub mod select;
pub mod train;
pub mod view;
