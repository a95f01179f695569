//! Decisions drawn from the fuzz input.

/// Reads decisions from a list of words (zeros once it runs out), so that a shorter
/// input means "no corruption, smallest sizes".
pub struct Gen<'a> {
    choices: &'a [u32],
    pos: usize,
}

impl<'a> Gen<'a> {
    pub fn new(choices: &'a [u32]) -> Self {
        Gen { choices, pos: 0 }
    }

    pub fn next(&mut self) -> u32 {
        let v = self.choices.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }

    pub fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// True with probability `k / n` (false for a zero choice).
    pub fn chance(&mut self, k: u32, n: u32) -> bool {
        self.below(n) >= n.saturating_sub(k)
    }
}

/// The little-endian words of `bytes` (a short tail is zero-padded).
pub fn words(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
        .collect()
}

/// An input split into a selector byte, a length-prefixed byte string and words:
/// `[sel][n][n bytes][words...]` (missing parts are zero / empty).
pub struct Split {
    pub sel: u8,
    pub bytes: Vec<u8>,
    pub words: Vec<u32>,
}

pub fn split(data: &[u8]) -> Split {
    let sel = data.first().copied().unwrap_or(0);
    let n = data.get(1).copied().unwrap_or(0) as usize;
    let rest = data.get(2..).unwrap_or(&[]);
    let n = n.min(rest.len());
    Split {
        sel,
        bytes: rest[..n].to_vec(),
        words: words(&rest[n..]),
    }
}
