//! The data-parallel half of a refinement step (issue 16): each rank encodes its share of the
//! batch; the heads see the whole batch's features; encoder gradients come back per rank.
//!
//! Every rank gathers all ranks' tapped features, so heads, their BatchNorm statistics, the NN
//! lookups, the loss (negatives = the whole batch, method.md §3 item 3) and the queue update
//! (all N samples, item 6) are the single-process computation on the whole batch, identical on
//! every rank. Backward runs in two passes: the loss to the gathered features (leaves), then
//! this rank's rows of that gradient through its own encoder pass. Encoder gradients are summed
//! over ranks, head gradients (each rank computed them whole) averaged; every rank applies the
//! same update, so weights, EMA and optimizer stay identical without a broadcast.

use super::trainer::Trainer;
use crate::dist::grads::{self, Reduce};
use crate::dist::rows::Layout;
use crate::host::host;
use anyhow::{Context, Result};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};
use std::time::Instant;

impl Trainer {
    /// The gathered shape of this step: all views, `per_rank` samples per rank.
    pub(super) fn layout(&self, per_rank: usize, local: &[Tensor<2>]) -> Result<Layout> {
        let views = self.cfg.data.views.globals.len() + self.cfg.data.views.n_local;
        let dim = local.first().map(|x| x.dims()[1]).context("no heads")?;
        Ok(Layout {
            world: self.comm.size(),
            views,
            per_rank,
            dim,
        })
    }

    /// Every head's features of the whole batch, built from all ranks' rows; in stage 3 they
    /// are leaves whose gradient [`Trainer::ranked_grads`] sends back through the encoder.
    pub(super) fn gather(
        &self,
        local: &[Tensor<2>],
        layout: &Layout,
        stage3: bool,
    ) -> Result<Vec<Tensor<2>>> {
        let ad = self.device.clone().autodiff();
        let rows = layout.views * layout.batch();
        local
            .iter()
            .map(|x| {
                let mine = host(x.clone())?.data;
                let whole = layout.gather(&*self.comm, &mine);
                let t = Tensor::<2>::from_data(TensorData::new(whole, [rows, layout.dim]), &ad);
                Ok(if stage3 { t.require_grad() } else { t })
            })
            .collect()
    }

    /// The step's gradients, combined over ranks: heads from the loss's backward, the encoder
    /// (stage 3) from a second backward of Σ ⟨this rank's features, their loss gradient⟩.
    pub(super) fn ranked_grads(
        &mut self,
        total: Tensor<1>,
        local: Vec<Tensor<2>>,
        gathered: &[Tensor<2>],
        layout: &Layout,
        stage3: bool,
    ) -> Result<GradientsParams> {
        let model = self.model()?;
        let mut g = total.backward();
        let mut sources = vec![GradientsParams::from_module(&mut g, model)];
        if stage3 {
            let ad = self.device.clone().autodiff();
            let mut surrogate: Option<Tensor<1>> = None;
            for (x, leaf) in local.into_iter().zip(gathered) {
                let dx = leaf
                    .grad(&g)
                    .context("internal: no gradient reached the gathered features")?;
                let mine = layout.rows_of(&host(dx)?.data, self.comm.rank());
                let gx = Tensor::<2>::from_data(TensorData::new(mine, x.dims()), &ad);
                let s = (x * gx).sum();
                surrogate = Some(match surrogate {
                    Some(t) => t + s,
                    None => s,
                });
            }
            let surrogate = surrogate.context("no heads")?;
            sources.push(GradientsParams::from_grads(surrogate.backward(), model));
        }
        let t0 = Instant::now();
        let how = |path: &str| {
            if path.starts_with("encoder") {
                Reduce::Sum
            } else {
                Reduce::Mean
            }
        };
        let out = grads::all_reduce(&*self.comm, model, sources, &how)?;
        self.comm_time += t0.elapsed();
        Ok(out)
    }
}
