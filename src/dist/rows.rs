//! Row bookkeeping between a rank's share of a batch and the whole batch: every view's rows are
//! ordered rank 0's samples, then rank 1's, … — the order a single process with the whole batch uses.

use super::comm::Comm;

/// The shape of one gathered matrix: `views` blocks of `per_rank` rows per rank, `dim` wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub world: usize,
    pub views: usize,
    pub per_rank: usize,
    pub dim: usize,
}

impl Layout {
    /// Rows of one view over all ranks.
    pub fn batch(&self) -> usize {
        self.world * self.per_rank
    }

    /// Every rank's `[views·per_rank, dim]` rows, view-major, gathered into the whole batch's
    /// `[views·world·per_rank, dim]`, view-major.
    pub fn gather(&self, comm: &dyn Comm, mine: &[f32]) -> Vec<f32> {
        self.interleave(&comm.all_gather_f32(mine))
    }

    /// Rank-major `[world][views·per_rank, dim]` → view-major `[views][world·per_rank, dim]`.
    pub fn interleave(&self, by_rank: &[f32]) -> Vec<f32> {
        let block = self.per_rank * self.dim;
        let mut out = Vec::with_capacity(by_rank.len());
        for v in 0..self.views {
            for r in 0..self.world {
                let at = (r * self.views + v) * block;
                out.extend_from_slice(&by_rank[at..at + block]);
            }
        }
        out
    }

    /// Rank `rank`'s rows of a view-major whole-batch matrix, as `[views·per_rank, dim]`.
    pub fn rows_of(&self, whole: &[f32], rank: usize) -> Vec<f32> {
        let block = self.per_rank * self.dim;
        let mut out = Vec::with_capacity(self.views * block);
        for v in 0..self.views {
            let at = (v * self.world + rank) * block;
            out.extend_from_slice(&whole[at..at + block]);
        }
        out
    }
}

/// The whole batch's dataset indices and labels, in the order of [`Layout::gather`].
pub fn gather_samples(
    comm: &dyn Comm,
    indices: &[usize],
    labels: &[i64],
) -> (Vec<usize>, Vec<i64>) {
    let mut send: Vec<u64> = indices.iter().map(|&i| i as u64).collect();
    send.extend(labels.iter().map(|&l| l as u64));
    let all = comm.all_gather_u64(&send);
    let n = indices.len();
    let (mut idx, mut lab) = (Vec::new(), Vec::new());
    for chunk in all.chunks(2 * n.max(1)) {
        idx.extend(chunk[..n].iter().map(|&i| i as usize));
        lab.extend(chunk[n..].iter().map(|&l| l as i64));
    }
    (idx, lab)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_and_rows_of_are_inverse() {
        let l = Layout {
            world: 3,
            views: 2,
            per_rank: 2,
            dim: 1,
        };
        // rank r, view v, row i  ->  100r + 10v + i
        let by_rank: Vec<f32> = (0..3)
            .flat_map(|r| {
                (0..2).flat_map(move |v| (0..2).map(move |i| (100 * r + 10 * v + i) as f32))
            })
            .collect();
        let whole = l.interleave(&by_rank);
        let expect = [
            0., 1., 100., 101., 200., 201., 10., 11., 110., 111., 210., 211.,
        ];
        assert_eq!(whole, expect);
        for r in 0..3 {
            assert_eq!(l.rows_of(&whole, r), by_rank[r * 4..(r + 1) * 4]);
        }
        assert_eq!(l.batch(), 6);
    }

    #[test]
    fn samples_of_one_rank_come_back_unchanged() {
        let (i, l) = gather_samples(&super::super::Single, &[5, 7], &[-1, 3]);
        assert_eq!((i, l), (vec![5, 7], vec![-1, 3]));
    }
}
