//! The Barnes–Hut quadtree of a 2-D embedding: cells with their point count and centre of mass,
//! one point per leaf (coincident points share a leaf), for t-SNE's repulsive forces.

/// Deepest level; below it (or below a tiny width) coincident points stay in one leaf.
const MAX_DEPTH: usize = 48;

struct Node {
    com: [f64; 2],
    count: f64,
    /// Squared side length.
    width2: f64,
    /// Children are `nodes[first..first + children]` (none: a leaf).
    first: u32,
    children: u32,
    /// The node's points are `order[start..end]`.
    start: u32,
    end: u32,
}

pub(crate) struct QuadTree<'a> {
    nodes: Vec<Node>,
    order: Vec<usize>,
    y: &'a [[f64; 2]],
}

impl<'a> QuadTree<'a> {
    /// Builds the tree of the points `y` (all finite).
    pub(crate) fn new(y: &'a [[f64; 2]]) -> Self {
        let mut tree = Self {
            nodes: Vec::with_capacity(2 * y.len() + 1),
            order: (0..y.len()).collect(),
            y,
        };
        let (centre, half) = bounding_square(y);
        tree.nodes.push(tree.node(half, 0, y.len()));
        let min_half = 1e-9 * half;
        let mut stack = vec![(0usize, centre, half, 0usize)];
        while let Some((id, centre, half, depth)) = stack.pop() {
            let n = &tree.nodes[id];
            if n.end - n.start <= 1 || depth >= MAX_DEPTH || half <= min_half {
                continue;
            }
            for (child, c) in tree.split(id, centre, half) {
                stack.push((child, c, half / 2.0, depth + 1));
            }
        }
        tree
    }

    /// The point indices in tree order (nearby points next to each other).
    pub(crate) fn order(&self) -> &[usize] {
        &self.order
    }

    /// A leaf over `order[start..end]` with its centre of mass.
    fn node(&self, half: f64, start: usize, end: usize) -> Node {
        let mut com = [0.0; 2];
        for &i in &self.order[start..end] {
            com = [com[0] + self.y[i][0], com[1] + self.y[i][1]];
        }
        let count = (end - start) as f64;
        if count > 0.0 {
            com = [com[0] / count, com[1] / count];
        }
        let (first, children) = (0, 0);
        let (start, end) = (start as u32, end as u32);
        let width2 = 4.0 * half * half;
        Node {
            com,
            count,
            width2,
            first,
            children,
            start,
            end,
        }
    }

    /// Partitions node `id`'s points into its quadrants and appends the non-empty children
    /// (contiguously); returns their ids and centres.
    fn split(&mut self, id: usize, c: [f64; 2], half: f64) -> Vec<(usize, [f64; 2])> {
        let (start, end) = (self.nodes[id].start as usize, self.nodes[id].end as usize);
        let y = self.y;
        let mid = start + partition(&mut self.order[start..end], |i| y[i][1] < c[1]);
        let lo = start + partition(&mut self.order[start..mid], |i| y[i][0] < c[0]);
        let hi = mid + partition(&mut self.order[mid..end], |i| y[i][0] < c[0]);
        let ranges = [(start, lo), (lo, mid), (mid, hi), (hi, end)];
        let first = self.nodes.len();
        let mut children = Vec::with_capacity(4);
        for (q, &(s, e)) in ranges.iter().enumerate().filter(|(_, r)| r.0 < r.1) {
            let h = half / 2.0;
            let dx = if q & 1 == 1 { h } else { -h };
            let dy = if q & 2 == 2 { h } else { -h };
            children.push((self.nodes.len(), [c[0] + dx, c[1] + dy]));
            let node = self.node(h, s, e);
            self.nodes.push(node);
        }
        self.nodes[id].first = first as u32;
        self.nodes[id].children = children.len() as u32;
        children
    }

    /// Σ_{j≠i} q̃ᵢⱼ² (yᵢ − yⱼ) and Σ_{j≠i} q̃ᵢⱼ with q̃ = 1/(1+‖yᵢ−yⱼ‖²), cells whose width is
    /// below θ times their distance summarised by their centre of mass (θ = 0: exact).
    pub(crate) fn repulsion(&self, i: usize, theta: f64) -> ([f64; 2], f64) {
        let p = self.y[i];
        let theta2 = theta * theta;
        let (mut f, mut z) = ([0.0f64; 2], 0.0f64);
        let mut add = |d: [f64; 2], count: f64| {
            let q = 1.0 / (1.0 + d[0] * d[0] + d[1] * d[1]);
            z += count * q;
            let m = count * q * q;
            f = [f[0] + m * d[0], f[1] + m * d[1]];
        };
        let mut stack = [0u32; 4 * MAX_DEPTH + 8];
        let mut len = 1usize;
        while len > 0 {
            len -= 1;
            let n = &self.nodes[stack[len] as usize];
            let d = [p[0] - n.com[0], p[1] - n.com[1]];
            if n.children == 0 {
                let points = &self.order[n.start as usize..n.end as usize];
                if let [j] = points {
                    if *j != i {
                        add(d, 1.0);
                    }
                    continue;
                }
                for &j in points.iter().filter(|&&j| j != i) {
                    add([p[0] - self.y[j][0], p[1] - self.y[j][1]], 1.0);
                }
            } else if n.width2 < theta2 * (d[0] * d[0] + d[1] * d[1]) {
                add(d, n.count);
            } else {
                for c in n.first..n.first + n.children {
                    stack[len] = c;
                    len += 1;
                }
            }
        }
        (f, z)
    }
}

/// Moves the items satisfying `pred` to the front; returns how many there are.
fn partition(s: &mut [usize], pred: impl Fn(usize) -> bool) -> usize {
    let mut first = 0;
    for k in 0..s.len() {
        if pred(s[k]) {
            s.swap(first, k);
            first += 1;
        }
    }
    first
}

/// Centre and half side of a square around all points (slightly enlarged; 1 when empty/flat).
fn bounding_square(y: &[[f64; 2]]) -> ([f64; 2], f64) {
    let (mut lo, mut hi) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in y {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    if y.is_empty() {
        return ([0.0; 2], 1.0);
    }
    let centre = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    let half = (hi[0] - lo[0]).max(hi[1] - lo[1]) / 2.0;
    let half = if half > 0.0 { half * (1.0 + 1e-6) } else { 1.0 };
    (centre, half)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(y: &[[f64; 2]], i: usize) -> ([f64; 2], f64) {
        let (mut f, mut z) = ([0.0; 2], 0.0);
        for (_, q) in y.iter().enumerate().filter(|&(j, _)| j != i) {
            let d = [y[i][0] - q[0], y[i][1] - q[1]];
            let w = 1.0 / (1.0 + d[0] * d[0] + d[1] * d[1]);
            z += w;
            f = [f[0] + w * w * d[0], f[1] + w * w * d[1]];
        }
        (f, z)
    }

    #[test]
    fn theta_zero_is_exact_even_with_duplicates() {
        let mut y: Vec<[f64; 2]> = (0..50)
            .map(|i| [(i as f64 * 0.37).sin() * 3.0, (i as f64 * 0.91).cos()])
            .collect();
        y.extend([[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]);
        let tree = QuadTree::new(&y);
        for i in 0..y.len() {
            let (f, z) = tree.repulsion(i, 0.0);
            let (ef, ez) = exact(&y, i);
            assert!((z - ez).abs() < 1e-12 * ez, "{i}");
            assert!(
                (f[0] - ef[0]).abs() < 1e-12 && (f[1] - ef[1]).abs() < 1e-12,
                "{i}"
            );
        }
    }

    #[test]
    fn every_point_lands_in_one_leaf() {
        let y: Vec<[f64; 2]> = (0..200)
            .map(|i| [(i % 13) as f64, (i / 13) as f64])
            .collect();
        let tree = QuadTree::new(&y);
        let mut seen = vec![0; y.len()];
        for n in tree.nodes.iter().filter(|n| n.children == 0) {
            tree.order[n.start as usize..n.end as usize]
                .iter()
                .for_each(|&i| seen[i] += 1);
        }
        assert!(seen.iter().all(|&s| s == 1));
        assert_eq!(tree.nodes[0].count, 200.0);
    }
}
