//! The Nearest Neighbor Alignment loss (method.md §3 items 1, 4, 5): stop-gradient anchors,
//! only the positive swapped for its queue neighbour; NNCLR's all-swap as an option.

use super::queue::l2n;
use burn::tensor::{Tensor, TensorData};
use serde::{Deserialize, Serialize};

/// Which logits the nearest neighbour replaces, and which views the local terms use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossVariant {
    /// NNA as intended: positive = NN, negatives = the sample's own embedding; locals l1..lL.
    Nna,
    /// NNA with the reference code's local-index quirk (views 0..L−1 instead of G..G+L−1).
    NnaReferenceQuirk,
    /// NNCLR: the NN replaces the anchor in every logit.
    AllSwap,
}

/// Loss of one head and its alignment statistics.
pub struct HeadLoss {
    pub loss: Tensor<1>,
    /// Mean softmax probability of the positive over global / local terms.
    pub global_alignment: f64,
    pub local_alignment: f64,
}

/// One term ℓ(v, u): anchors `z_v` (detached), neighbours `nn_v` (normalised), predictions `p_u`.
/// Returns the batch-mean cross-entropy `[1]` and the per-row positive probabilities `[B]`.
pub fn term(
    z_v: Tensor<2>,
    nn_v: Tensor<2>,
    p_u: Tensor<2>,
    tau: f64,
    variant: LossVariant,
) -> (Tensor<1>, Tensor<1>) {
    let [b, _] = z_v.dims();
    let p = l2n(p_u);
    let eye = Tensor::<2>::from_data(TensorData::new(eye_data(b), [b, b]), &p.device());
    let logits = match variant {
        LossVariant::AllSwap => nn_v.matmul(p.transpose()).div_scalar(tau),
        _ => {
            let anchors = l2n(z_v.detach());
            let neg = anchors.matmul(p.clone().transpose()).div_scalar(tau);
            let pos = (nn_v * p).sum_dim(1).div_scalar(tau); // [B, 1]
            let off = eye.clone().neg().add_scalar(1.0);
            neg * off + eye.clone() * pos
        }
    };
    let max = logits.clone().max_dim(1).detach();
    let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max; // [B, 1]
    let diag = (logits * eye).sum_dim(1); // [B, 1]
    let ce = (lse.clone() - diag.clone()).reshape([b]);
    let prob = (diag - lse).exp().reshape([b]).detach();
    (ce.mean(), prob)
}

fn eye_data(b: usize) -> Vec<f32> {
    (0..b * b)
        .map(|i| if i / b == i % b { 1.0 } else { 0.0 })
        .collect()
}

/// (anchor view, prediction view) index pairs.
pub type ViewPairs = Vec<(usize, usize)>;

/// Which (anchor, prediction) view pairs the loss uses for `g` global and `l` local views.
pub fn pairs(g: usize, l: usize, variant: LossVariant) -> (ViewPairs, ViewPairs) {
    let global = (0..g)
        .flat_map(|v| (0..g).filter(move |&u| u != v).map(move |u| (v, u)))
        .collect();
    let offset = if variant == LossVariant::NnaReferenceQuirk {
        0
    } else {
        g
    };
    let local = (0..g)
        .flat_map(|v| (0..l).map(move |i| (v, offset + i)))
        .collect();
    (global, local)
}

/// Per-head loss: flat mean over all global↔global and global→local terms (method.md §3 item 5).
/// `z` and `p` are `[V·B, out]` in view-major order (globals first); `nn[v]` is view v's NN.
pub fn head_loss(
    z: &Tensor<2>,
    p: &Tensor<2>,
    nn: &[Tensor<2>],
    n_local: usize,
    tau: f64,
    variant: LossVariant,
) -> HeadLoss {
    let g = nn.len();
    let [rows, _] = z.dims();
    let b = rows / (g + n_local);
    let view = |t: &Tensor<2>, v: usize| t.clone().narrow(0, v * b, b);
    let (global, local) = pairs(g, n_local, variant);
    let n_terms = (global.len() + local.len()) as f64;
    let mut total: Option<Tensor<1>> = None;
    let mut align = [0.0f64; 2];
    for (kind, list) in [(0, &global), (1, &local)] {
        for &(v, u) in list {
            let (l, prob) = term(view(z, v), nn[v].clone(), view(p, u), tau, variant);
            align[kind] += prob.mean().into_scalar::<f32>() as f64 / list.len().max(1) as f64;
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
    }
    let loss = total
        .map(|t| t.div_scalar(n_terms))
        .unwrap_or_else(|| Tensor::zeros([1], &z.device()));
    HeadLoss {
        loss,
        global_alignment: align[0],
        local_alignment: align[1],
    }
}
