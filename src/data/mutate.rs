//! Test-only seeded byte mutations for the robustness tests of the file readers (issue 14): every
//! mutated input must give `Ok` or `Err`, never a panic, abort or runaway allocation.

/// SplitMix64: a tiny seeded generator, enough to pick mutations reproducibly.
pub(crate) struct Mutator(u64);

impl Mutator {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A mutated copy of `input`: byte flips, overwritten words (small, huge or all-ones values,
    /// which hit length and size fields), truncation, or a duplicated slice.
    pub(crate) fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut b = input.to_vec();
        if b.is_empty() {
            return b;
        }
        let rounds = 1 + self.below(4);
        for _ in 0..rounds {
            if b.is_empty() {
                break;
            }
            match self.below(5) {
                0 => {
                    let i = self.below(b.len());
                    b[i] ^= 1 << self.below(8);
                }
                1 => {
                    let i = self.below(b.len());
                    b[i] = self.next() as u8;
                }
                2 => {
                    let i = self.below(b.len());
                    let word: u64 = match self.below(4) {
                        0 => 0,
                        1 => u64::MAX,
                        2 => 1 << self.below(64),
                        _ => self.next(),
                    };
                    let width = [2usize, 4, 8][self.below(3)];
                    for (k, byte) in word.to_le_bytes()[..width].iter().enumerate() {
                        if let Some(x) = b.get_mut(i + k) {
                            *x = *byte;
                        }
                    }
                }
                3 => {
                    let keep = self.below(b.len());
                    b.truncate(keep);
                }
                _ => {
                    let start = self.below(b.len());
                    let len = 1 + self.below((b.len() - start).min(4096));
                    let slice = b[start..start + len].to_vec();
                    let at = self.below(b.len() + 1);
                    b.splice(at..at, slice);
                }
            }
        }
        b
    }
}
