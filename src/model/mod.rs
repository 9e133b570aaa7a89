//! Models: the ViT encoder family (one file per model family, as in candle-transformers) and
//! its fixed positional embeddings.

pub mod features;
pub mod mae;
pub mod pos_embed;
pub mod vit;
