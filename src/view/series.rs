//! Curves as the plots need them: a shared x timeline (step / epoch / wall time), TensorBoard's
//! debiased EMA smoothing, (x, y) points and y ranges for linear and log axes; bounded storage.

/// Largest smoothing weight accepted (1 would never move off the first point).
pub const MAX_WEIGHT: f64 = 0.999;

/// What the x axis of a plot shows.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum XAxis {
    /// Updates done (the run log's `step`).
    #[default]
    Step,
    /// Fractional epochs (`step / steps_per_epoch` once known, else the event's epoch).
    Epoch,
    /// Seconds since the first logged step (the steps' clock times, else estimated from `img_per_s`).
    WallTime,
}

impl XAxis {
    pub const ALL: [XAxis; 3] = [XAxis::Step, XAxis::Epoch, XAxis::WallTime];

    pub fn label(self) -> &'static str {
        match self {
            XAxis::Step => "step",
            XAxis::Epoch => "epoch",
            XAxis::WallTime => "time (s)",
        }
    }
}

/// The x coordinates of a table's rows. `wall` is NaN where it cannot be computed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    step: Vec<u64>,
    epoch: Vec<f64>,
    wall: Vec<f64>,
    steps_per_epoch: Option<f64>,
}

impl Timeline {
    pub fn push(&mut self, step: u64, epoch: f64, wall: f64) {
        self.step.push(step);
        self.epoch.push(epoch);
        self.wall.push(wall);
    }

    pub fn len(&self) -> usize {
        self.step.len()
    }

    pub fn is_empty(&self) -> bool {
        self.step.is_empty()
    }

    pub fn steps(&self) -> &[u64] {
        &self.step
    }

    /// Once known, epochs are drawn as `step / steps_per_epoch` (fractional).
    pub fn set_steps_per_epoch(&mut self, spe: Option<u64>) {
        self.steps_per_epoch = spe.filter(|&s| s > 0).map(|s| s as f64);
    }

    /// Row `i`'s coordinate on `axis` (NaN when out of range or unknown).
    pub fn x(&self, axis: XAxis, i: usize) -> f64 {
        let Some(&step) = self.step.get(i) else {
            return f64::NAN;
        };
        match axis {
            XAxis::Step => step as f64,
            XAxis::Epoch => self
                .steps_per_epoch
                .map_or(self.epoch[i], |spe| step as f64 / spe),
            XAxis::WallTime => self.wall[i],
        }
    }

    /// Keeps rows 0, 2, 4, … (see [`Thinning`]).
    pub fn retain_even(&mut self) {
        retain_even(&mut self.step);
        retain_even(&mut self.epoch);
        retain_even(&mut self.wall);
    }
}

/// TensorBoard's debiased exponential moving average, one value at a time:
/// `ema_t = w·ema_{t−1} + (1−w)·x_t`, `smoothed_t = ema_t / (1 − w^t)`, with `t` counting only
/// the finite values (NaN/absent values are skipped and do not advance `t`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ema {
    weight: f64,
    ema: f64,
    /// `w^t`.
    power: f64,
}

impl Ema {
    /// `weight` is clamped to `[0, MAX_WEIGHT]` (NaN → 0: no smoothing).
    pub fn new(weight: f64) -> Self {
        let weight = if weight.is_finite() {
            weight.clamp(0.0, MAX_WEIGHT)
        } else {
            0.0
        };
        Self {
            weight,
            ema: 0.0,
            power: 1.0,
        }
    }

    /// Adds `x` (ignored unless finite) and returns the smoothed value so far.
    pub fn push(&mut self, x: f64) -> Option<f64> {
        if x.is_finite() {
            self.ema = self.weight * self.ema + (1.0 - self.weight) * x;
            self.power *= self.weight;
        }
        self.value()
    }

    /// The smoothed value, or None before the first finite value.
    pub fn value(&self) -> Option<f64> {
        (self.power < 1.0).then(|| self.ema / (1.0 - self.power))
    }
}

/// `y` smoothed with [`Ema`]; non-finite inputs stay NaN in the output (gaps, not values).
pub fn smooth(y: &[f64], weight: f64) -> Vec<f64> {
    let mut ema = Ema::new(weight);
    y.iter()
        .map(|&v| match ema.push(v) {
            Some(s) if v.is_finite() => s,
            _ => f64::NAN,
        })
        .collect()
}

/// The plot points of `y` (one value per timeline row) on `axis`, smoothed with `weight`
/// (0 = raw); rows whose x or y is not finite are left out.
pub fn points(t: &Timeline, y: &[f64], axis: XAxis, weight: f64) -> Vec<[f64; 2]> {
    let ys = if weight > 0.0 {
        smooth(y, weight)
    } else {
        y.to_vec()
    };
    ys.iter()
        .enumerate()
        .map(|(i, &v)| [t.x(axis, i), v])
        .filter(|[x, v]| x.is_finite() && v.is_finite())
        .collect()
}

/// Smallest and largest finite y of `points` (None without any).
pub fn y_range(points: &[[f64; 2]]) -> Option<(f64, f64)> {
    range(points.iter().map(|p| p[1]).filter(|v| v.is_finite()))
}

/// Smallest and largest positive finite y, for a log axis (None without any).
pub fn y_range_log(points: &[[f64; 2]]) -> Option<(f64, f64)> {
    range(
        points
            .iter()
            .map(|p| p[1])
            .filter(|v| v.is_finite() && *v > 0.0),
    )
}

fn range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |acc, v| match acc {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Bounded storage with O(1) amortised appends: every arrival is kept until `cap` rows are held;
/// then every second row is dropped and from then on only every `stride`-th arrival is kept
/// (stride doubles at each halving), so the kept rows stay evenly spread over the whole run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thinning {
    cap: usize,
    stride: u64,
    arrivals: u64,
}

/// What to do with one arrival.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    Skip,
    Push,
    /// Drop every second held row ([`retain_even`]), then push.
    HalveThenPush,
}

impl Thinning {
    /// `cap` is rounded up to an even number ≥ 2.
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(2).next_multiple_of(2),
            stride: 1,
            arrivals: 0,
        }
    }

    /// Decides about the next arrival, given how many rows are held now.
    pub fn admit(&mut self, held: usize) -> Admit {
        let n = self.arrivals;
        self.arrivals = self.arrivals.saturating_add(1);
        if !n.is_multiple_of(self.stride) {
            return Admit::Skip;
        }
        if held < self.cap {
            return Admit::Push;
        }
        self.stride = self.stride.saturating_mul(2);
        // n is a multiple of the old stride and of cap·stride, hence of the new stride
        Admit::HalveThenPush
    }

    /// 1 while every arrival is kept.
    pub fn stride(&self) -> u64 {
        self.stride
    }
}

/// Keeps elements 0, 2, 4, … in place.
pub fn retain_even<T>(v: &mut Vec<T>) {
    let mut i = 0;
    v.retain(|_| {
        i += 1;
        i % 2 == 1
    });
}

/// A list bounded by [`Thinning`].
#[derive(Clone, Debug, PartialEq)]
pub struct Thinned<T> {
    items: Vec<T>,
    thin: Thinning,
}

impl<T> Thinned<T> {
    pub fn new(cap: usize) -> Self {
        Self {
            items: Vec::new(),
            thin: Thinning::new(cap),
        }
    }

    pub fn push(&mut self, item: T) {
        match self.thin.admit(self.items.len()) {
            Admit::Skip => {}
            Admit::Push => self.items.push(item),
            Admit::HalveThenPush => {
                retain_even(&mut self.items);
                self.items.push(item);
            }
        }
    }

    pub fn items(&self) -> &[T] {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn debiased_ema_of_a_constant_is_the_constant_from_the_first_point() {
        for w in [0.0, 0.3, 0.6, 0.9, 0.99] {
            let s = smooth(&[2.5; 20], w);
            assert!(s.iter().all(|&v| close(v, 2.5)), "w={w}: {s:?}");
        }
    }

    #[test]
    fn debiased_ema_matches_a_hand_computed_example_and_skips_gaps() {
        // w = 0.5, x = 1, 2, 4:
        //   ema1 = 0.5·0 + 0.5·1 = 0.5      smoothed1 = 0.5 / (1 − 0.5)   = 1
        //   ema2 = 0.5·0.5 + 0.5·2 = 1.25   smoothed2 = 1.25 / (1 − 0.25) = 5/3
        //   ema3 = 0.5·1.25 + 0.5·4 = 2.625 smoothed3 = 2.625 / (1 − 0.125) = 3
        let s = smooth(&[1.0, 2.0, 4.0], 0.5);
        assert!(
            close(s[0], 1.0) && close(s[1], 5.0 / 3.0) && close(s[2], 3.0),
            "{s:?}"
        );
        // a NaN in between is a gap that does not advance t
        let g = smooth(&[1.0, f64::NAN, 2.0, 4.0], 0.5);
        assert!(g[1].is_nan());
        assert!(close(g[2], 5.0 / 3.0) && close(g[3], 3.0), "{g:?}");
        // weight 0 is the raw series; weights ≥ 1 or NaN are clamped
        assert_eq!(smooth(&[1.0, 5.0], 0.0), vec![1.0, 5.0]);
        assert!(smooth(&[1.0, 5.0], 1.0).iter().all(|v| v.is_finite()));
        assert_eq!(smooth(&[1.0, 5.0], f64::NAN), vec![1.0, 5.0]);
        assert_eq!(Ema::new(0.5).value(), None);
    }

    #[test]
    fn points_follow_the_axis_and_ranges_ignore_what_a_log_axis_cannot_show() {
        let mut t = Timeline::default();
        for (s, e, w) in [(10, 0.0, 1.0), (20, 0.0, 2.0), (30, 1.0, f64::NAN)] {
            t.push(s, e, w);
        }
        let y = [-1.0, f64::NAN, 4.0];
        assert_eq!(
            points(&t, &y, XAxis::Step, 0.0),
            vec![[10.0, -1.0], [30.0, 4.0]]
        );
        assert_eq!(points(&t, &y, XAxis::WallTime, 0.0), vec![[1.0, -1.0]]);
        assert_eq!(points(&t, &y, XAxis::Epoch, 0.0)[1], [1.0, 4.0]);
        t.set_steps_per_epoch(Some(20));
        assert_eq!(points(&t, &y, XAxis::Epoch, 0.0)[1], [1.5, 4.0]);
        let p = points(&t, &y, XAxis::Step, 0.0);
        assert_eq!(y_range(&p), Some((-1.0, 4.0)));
        assert_eq!(y_range_log(&p), Some((4.0, 4.0)));
        assert_eq!(y_range_log(&[[0.0, 0.0], [1.0, -2.0]]), None);
        assert!(t.x(XAxis::Step, 99).is_nan());
    }

    #[test]
    fn thinning_bounds_memory_and_keeps_rows_evenly_spread() {
        let mut l = Thinned::new(8);
        for i in 0..1000u64 {
            l.push(i);
            assert!(l.items().len() <= 8);
        }
        let s = l.thin.stride();
        assert_eq!(s, 128);
        assert!(
            l.items()
                .iter()
                .enumerate()
                .all(|(k, &v)| v == k as u64 * s)
        );
        let mut all = Thinned::new(8);
        (0..8).for_each(|i| all.push(i));
        assert_eq!(all.items(), &[0, 1, 2, 3, 4, 5, 6, 7]);
    }
}
