//! Feature extraction: pooled features at chosen taps (blocks, the encoder output) for images fed
//! chunk by chunk — the one path `mimr embed`, `mimr eval`, online evaluation and snapshots share.

use super::vit::{Pool, Taps, Vit, pool};
use crate::host::host;
use anyhow::{Context, Result, ensure};
use burn::tensor::{Device, Tensor, TensorData};

/// Where features are read: `Some(block)` (0-indexed raw block output) or `None` (the encoder
/// output, after the final norm when the model has one).
pub type Tap = Option<usize>;

/// Normalised images `[n, 3, h, w]`, row-major.
pub struct ImageChunk {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
}

/// One tap's pooled features over all chunks: `[rows, dim]` row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct TapFeatures {
    pub tap: Tap,
    pub dim: usize,
    pub data: Vec<f32>,
}

/// Runs `model` over every chunk and pools each tap with `how`; `done(n)` is called after each
/// chunk of `n` images (progress). Returns one entry per tap, in the order of `taps`.
pub fn extract<I>(
    model: &Vit,
    chunks: I,
    taps: &[Tap],
    how: Pool,
    device: &Device,
    mut done: impl FnMut(usize),
) -> Result<Vec<TapFeatures>>
where
    I: IntoIterator<Item = Result<ImageChunk>>,
{
    let mut blocks: Vec<usize> = taps.iter().flatten().copied().collect();
    blocks.sort_unstable();
    blocks.dedup();
    let wanted = Taps {
        blocks,
        final_output: taps.iter().any(Option::is_none),
    };
    let mut out: Vec<TapFeatures> = taps
        .iter()
        .map(|&tap| TapFeatures {
            tap,
            dim: 0,
            data: Vec::new(),
        })
        .collect();
    for chunk in chunks {
        let ImageChunk { data, shape } = chunk?;
        let n = shape[0];
        if n == 0 {
            continue;
        }
        ensure!(
            data.len() == shape.iter().product::<usize>(),
            "image chunk of {} values does not have shape {shape:?}",
            data.len()
        );
        let x = Tensor::<4>::from_data(TensorData::new(data, shape), device);
        let o = model.forward(x, &wanted);
        for f in &mut out {
            let tokens = o
                .tap(f.tap)
                .context("a requested tap is missing from the forward")?;
            let pooled = host(pool(tokens, how))?;
            f.dim = pooled.shape[1];
            f.data.extend(pooled.data);
        }
        done(n);
    }
    Ok(out)
}

/// Splits `[b, c, h, w]` images held in one buffer into chunks of at most `batch` images.
pub fn chunks_of(
    images: &[f32],
    shape: [usize; 4],
    batch: usize,
) -> impl Iterator<Item = Result<ImageChunk>> + '_ {
    let [b, c, h, w] = shape;
    let per = c * h * w;
    let batch = batch.max(1);
    (0..b).step_by(batch).map(move |start| {
        let n = batch.min(b - start);
        Ok(ImageChunk {
            data: images[start * per..(start + n) * per].to_vec(),
            shape: [n, c, h, w],
        })
    })
}
