//! Compute workloads shared by the bench guest plugin (`tests/plugins/bench-hook`, built to
//! wasm) and the native benches (`benches/compute.rs` includes this file with `#[path]`), so
//! the wasm-versus-native figures compare the very same source.
//!
//! Plain Rust on `serde`/`serde_json` only: no I/O, no threads, no clock, no randomness
//! beyond a fixed-seed xorshift, so every build computes the same answers.

use serde::{Deserialize, Serialize};

/// Size of the JSON document the JSON workload parses and re-serialises (1 MiB).
pub const JSON_BYTES: usize = 1 << 20;
/// Size of the buffer the hash workloads hash (16 MiB).
pub const HASH_BYTES: usize = 16 << 20;

/// A deterministic xorshift64* generator (fixed seed: reproducible data).
pub struct XorShift(u64);

impl XorShift {
    /// A generator; a zero seed is replaced (xorshift must not start at 0).
    pub fn new(seed: u64) -> Self {
        XorShift(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// One postal address (a nested object in the JSON workload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Address {
    /// Street line.
    pub street: String,
    /// City.
    pub city: String,
    /// Postal code.
    pub zip: String,
    /// Latitude, longitude.
    pub geo: [f64; 2],
}

/// One event in a record's history (an array of objects in the JSON workload).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Event kind.
    pub kind: String,
    /// Unix time.
    pub at: u64,
    /// Optional note.
    pub note: Option<String>,
}

/// One record: the mix of types a plugin's JSON traffic carries (strings with escapes,
/// integers, floats, booleans, nulls, arrays, nested objects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Identifier.
    pub id: u64,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
    /// Flag.
    pub active: bool,
    /// A float.
    pub score: f64,
    /// Free tags.
    pub tags: Vec<String>,
    /// Nested object.
    pub address: Address,
    /// Array of objects.
    pub history: Vec<Event>,
    /// Text with characters JSON must escape.
    pub bio: String,
}

const WORDS: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliett",
    "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra", "tango",
    "uniform", "victor", "whiskey", "xray", "yankee", "zulu",
];

fn word(rng: &mut XorShift) -> &'static str {
    WORDS[rng.below(WORDS.len() as u64) as usize]
}

fn record(rng: &mut XorShift, id: u64) -> Record {
    let tags = (0..rng.below(5)).map(|_| word(rng).to_string()).collect();
    let history = (0..rng.below(4))
        .map(|_| Event {
            kind: word(rng).to_string(),
            at: 1_700_000_000 + rng.below(100_000_000),
            note: if rng.below(2) == 0 {
                None
            } else {
                Some(format!("{} {}", word(rng), word(rng)))
            },
        })
        .collect();
    Record {
        id,
        name: format!("{} {}", word(rng), word(rng)),
        email: format!("{}.{}@example.com", word(rng), id),
        active: rng.below(2) == 1,
        score: (rng.below(1_000_000) as f64) / 1000.0,
        tags,
        address: Address {
            street: format!("{} {} street", rng.below(999), word(rng)),
            city: word(rng).to_string(),
            zip: format!("{:05}", rng.below(100_000)),
            geo: [
                (rng.below(180_000) as f64) / 1000.0 - 90.0,
                (rng.below(360_000) as f64) / 1000.0 - 180.0,
            ],
        },
        history,
        bio: format!(
            "\"{}\" said {}\tthen\n{} \\ {} \u{e9}\u{4e16}",
            word(rng),
            word(rng),
            word(rng),
            word(rng)
        ),
    }
}

/// A compact JSON array of records, at least `min_bytes` long (same bytes on every build).
pub fn make_json(min_bytes: usize) -> String {
    let mut rng = XorShift::new(42);
    let mut records = Vec::new();
    let mut len = 2usize;
    let mut id = 0u64;
    while len < min_bytes {
        let r = record(&mut rng, id);
        // Length of this element plus its comma; serialising a record cannot fail.
        len += serde_json::to_string(&r).map(|s| s.len() + 1).unwrap_or(0);
        records.push(r);
        id += 1;
    }
    serde_json::to_string(&records).unwrap_or_default()
}

/// The JSON workload: parse `input` into typed records and serialise them again; returns
/// the length of the output (equal to the input's length for compact input).
pub fn json_roundtrip(input: &str) -> Result<usize, String> {
    let records: Vec<Record> = serde_json::from_str(input).map_err(|e| e.to_string())?;
    let out = serde_json::to_string(&records).map_err(|e| e.to_string())?;
    Ok(out.len())
}

/// `len` pseudo-random bytes (fixed seed).
pub fn make_data(len: usize) -> Vec<u8> {
    let mut rng = XorShift::new(7);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// FNV-1a, 64 bits: one multiply per byte, a serial dependency chain (the worst case for
/// instruction-level parallelism, and for per-operator metering).
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

const P1: u64 = 0x9E37_79B1_85EB_CA87;
const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const P3: u64 = 0x1656_67B1_9E37_79F9;
const P4: u64 = 0x85EB_CA77_C2B2_AE63;
const P5: u64 = 0x27D4_EB2F_1656_67C5;

fn read_u64(d: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[i..i + 8]);
    u64::from_le_bytes(b)
}

fn read_u32(d: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&d[i..i + 4]);
    u64::from(u32::from_le_bytes(b))
}

fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

fn merge(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

/// XXH64 (the reference algorithm, plain Rust): four independent lanes of 64-bit
/// multiply-rotate, the kind of loop optimising compilers vectorise or pipeline.
pub fn xxh64(data: &[u8], seed: u64) -> u64 {
    let len = data.len();
    let mut i = 0usize;
    let mut h = if len >= 32 {
        let mut v1 = seed.wrapping_add(P1).wrapping_add(P2);
        let mut v2 = seed.wrapping_add(P2);
        let mut v3 = seed;
        let mut v4 = seed.wrapping_sub(P1);
        while i + 32 <= len {
            v1 = round(v1, read_u64(data, i));
            v2 = round(v2, read_u64(data, i + 8));
            v3 = round(v3, read_u64(data, i + 16));
            v4 = round(v4, read_u64(data, i + 24));
            i += 32;
        }
        let mut h = v1
            .rotate_left(1)
            .wrapping_add(v2.rotate_left(7))
            .wrapping_add(v3.rotate_left(12))
            .wrapping_add(v4.rotate_left(18));
        h = merge(h, v1);
        h = merge(h, v2);
        h = merge(h, v3);
        merge(h, v4)
    } else {
        seed.wrapping_add(P5)
    };
    h = h.wrapping_add(len as u64);
    while i + 8 <= len {
        h ^= round(0, read_u64(data, i));
        h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
        i += 8;
    }
    if i + 4 <= len {
        h ^= read_u32(data, i).wrapping_mul(P1);
        h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
        i += 4;
    }
    while i < len {
        h ^= u64::from(data[i]).wrapping_mul(P5);
        h = h.rotate_left(11).wrapping_mul(P1);
        i += 1;
    }
    h ^= h >> 33;
    h = h.wrapping_mul(P2);
    h ^= h >> 29;
    h = h.wrapping_mul(P3);
    h ^ (h >> 32)
}

/// Check the hash against XXH64's published test vectors (the benches call it once).
pub fn xxh64_self_test() -> bool {
    xxh64(b"", 0) == 0xEF46_DB37_51D8_E999 && xxh64(b"a", 0) == 0xD24E_C4F1_A98C_6E5B
}
