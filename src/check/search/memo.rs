//! The search's memo of (linearized set, state) nodes, with the bitsets and hashes it keys
//! them by.

use super::NONE;

/// A bitset that knows its first word that is not all ones (`lo`) and one past its last
/// non-zero word (`hi`), so that its canonical compressed form is `(lo, words[lo..hi])`.
pub(super) struct Bits {
    words: Vec<u64>,
    lo: usize,
    hi: usize,
}

impl Bits {
    pub(super) fn new(n: usize) -> Self {
        Bits {
            words: vec![0; n.div_ceil(64)],
            lo: 0,
            hi: 0,
        }
    }

    #[inline]
    pub(super) fn set(&mut self, i: u32) {
        let w = (i >> 6) as usize;
        self.words[w] |= 1u64 << (i & 63);
        if w >= self.hi {
            self.hi = w + 1;
        }
        if w == self.lo {
            while self.lo < self.words.len() && self.words[self.lo] == u64::MAX {
                self.lo += 1;
            }
        }
    }

    #[inline]
    pub(super) fn clear(&mut self, i: u32) {
        let w = (i >> 6) as usize;
        self.words[w] &= !(1u64 << (i & 63));
        if w < self.lo {
            self.lo = w;
        }
        if w + 1 == self.hi {
            // Words below `lo` are all ones, so this stops at `lo` at the latest.
            while self.hi > 0 && self.words[self.hi - 1] == 0 {
                self.hi -= 1;
            }
        }
    }

    #[inline]
    pub(super) fn tail(&self) -> &[u64] {
        &self.words[self.lo..self.hi.max(self.lo)]
    }
}

/// One memoised search node.
#[derive(Clone, Copy)]
struct Node {
    /// Hash of (all linearized operations, state).
    hash: u64,
    /// Hash of (linearized completed operations, state).
    sub_hash: u64,
    state: u32,
    /// Next node in the same exact-lookup bucket.
    next: u32,
    /// Next finished node in the same subsumption bucket.
    next_sub: u32,
    ok_lo: u32,
    ok_len: u32,
    info_lo: u32,
    info_len: u32,
    offset: usize,
}

/// How many finished nodes a subsumption lookup compares at most. Pruning less is always
/// sound; the cap keeps a lookup cheap when many sets of unknown operations share a bucket.
const SUBSUMPTION_SCAN: usize = 24;

/// The memo: every node entered, for exact lookups, and the nodes whose exploration finished
/// (and failed), chained by (completed operations, state) for subsumption lookups.
pub(super) struct Memo {
    buckets: Vec<u32>,
    sub_buckets: Vec<u32>,
    shift: u32,
    nodes: Vec<Node>,
    words: Vec<u64>,
}

impl Memo {
    /// A memo for a search over `ops` operations. A search that needs no backtracking enters
    /// about one node per operation, so the table starts with room for that (at a load of
    /// at most one half, up to 4,096 buckets) and doubles past it: a fixed large table cost
    /// more than the whole search of a small part.
    pub(super) fn new(ops: usize) -> Self {
        let bits = (2 * ops).next_power_of_two().trailing_zeros().clamp(4, 12);
        Memo {
            buckets: vec![NONE; 1 << bits],
            sub_buckets: vec![NONE; 1 << bits],
            shift: 64 - bits,
            nodes: Vec::new(),
            words: Vec::new(),
        }
    }

    pub(super) fn bytes(&self) -> usize {
        self.buckets.len() * 8
            + self.nodes.capacity() * size_of::<Node>()
            + self.words.capacity() * 8
    }

    #[inline]
    fn bucket(&self, hash: u64) -> usize {
        (hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    #[inline]
    fn ok_words(&self, n: &Node) -> &[u64] {
        &self.words[n.offset..n.offset + n.ok_len as usize]
    }

    #[inline]
    fn info_words(&self, n: &Node) -> &[u64] {
        let start = n.offset + n.ok_len as usize;
        &self.words[start..start + n.info_len as usize]
    }

    /// Was exactly this node entered before?
    #[inline]
    pub(super) fn contains(&self, hash: u64, state: u32, ok: &Bits, info: &Bits) -> bool {
        let mut i = self.buckets[self.bucket(hash)];
        while i != NONE {
            let n = &self.nodes[i as usize];
            if n.hash == hash
                && n.state == state
                && n.ok_lo as usize == ok.lo
                && n.info_lo as usize == info.lo
                && self.ok_words(n) == ok.tail()
                && self.info_words(n) == info.tail()
            {
                return true;
            }
            i = n.next;
        }
        false
    }

    /// Did a node with the same completed operations and state, and a subset of these
    /// unknown operations, fail?
    #[inline]
    pub(super) fn subsumed(&self, sub_hash: u64, state: u32, ok: &Bits, info: &Bits) -> bool {
        let mut i = self.sub_buckets[self.bucket(sub_hash)];
        let mut scanned = 0;
        while i != NONE && scanned < SUBSUMPTION_SCAN {
            let n = &self.nodes[i as usize];
            if n.sub_hash == sub_hash
                && n.state == state
                && n.ok_lo as usize == ok.lo
                && self.ok_words(n) == ok.tail()
                && subset(n.info_lo as usize, self.info_words(n), info)
            {
                return true;
            }
            scanned += 1;
            i = n.next_sub;
        }
        false
    }

    /// The bytes the next [`Memo::insert`] of this node would allocate: vectors that are full
    /// double, and a rehash allocates both bucket arrays anew while the old ones still live.
    pub(super) fn growth_of_insert(&self, ok: &Bits, info: &Bits) -> usize {
        let mut bytes = 0;
        if self.nodes.len() * 4 >= self.buckets.len() * 3 {
            bytes += 2 * 2 * self.buckets.len() * size_of::<u32>();
        }
        if self.nodes.len() == self.nodes.capacity() {
            bytes += self.nodes.capacity().max(4) * 2 * size_of::<Node>();
        }
        let words = ok.tail().len() + info.tail().len();
        if self.words.len() + words > self.words.capacity() {
            bytes += (self.words.capacity() * 2).max(self.words.len() + words) * 8;
        }
        bytes
    }

    pub(super) fn insert(
        &mut self,
        hash: u64,
        sub_hash: u64,
        state: u32,
        ok: &Bits,
        info: &Bits,
    ) -> u32 {
        if self.nodes.len() * 4 >= self.buckets.len() * 3 {
            self.grow();
        }
        let offset = self.words.len();
        self.words.extend_from_slice(ok.tail());
        self.words.extend_from_slice(info.tail());
        let b = self.bucket(hash);
        let id = self.nodes.len() as u32;
        self.nodes.push(Node {
            hash,
            sub_hash,
            state,
            next: self.buckets[b],
            next_sub: NONE,
            ok_lo: ok.lo as u32,
            ok_len: ok.tail().len() as u32,
            info_lo: info.lo as u32,
            info_len: info.tail().len() as u32,
            offset,
        });
        self.buckets[b] = id;
        id
    }

    /// Records that node `id` was explored and failed.
    pub(super) fn finish(&mut self, id: u32) {
        let b = self.bucket(self.nodes[id as usize].sub_hash);
        self.nodes[id as usize].next_sub = self.sub_buckets[b];
        self.sub_buckets[b] = id;
    }

    fn grow(&mut self) {
        let bits = 64 - self.shift + 1;
        self.shift = 64 - bits;
        // Keep the subsumption chains' order (newest first) by relinking oldest first.
        let finished: Vec<u32> = {
            let mut f = Vec::new();
            for &head in &self.sub_buckets {
                let mut i = head;
                while i != NONE {
                    f.push(i);
                    i = self.nodes[i as usize].next_sub;
                }
            }
            f.sort_unstable();
            f
        };
        self.buckets = vec![NONE; 1 << bits];
        self.sub_buckets = vec![NONE; 1 << bits];
        for id in 0..self.nodes.len() {
            let b = self.bucket(self.nodes[id].hash);
            self.nodes[id].next = self.buckets[b];
            self.buckets[b] = id as u32;
        }
        for id in finished {
            self.finish(id);
        }
    }
}

/// Is the stored set `(lo, tail)` a subset of `cur`?
#[inline]
fn subset(lo: usize, tail: &[u64], cur: &Bits) -> bool {
    if cur.lo < lo {
        // The stored set has all of words ..lo; `cur` misses a bit in one of them.
        return false;
    }
    tail.iter()
        .enumerate()
        .all(|(k, &w)| w & !cur.words[lo + k] == 0)
}

pub(super) fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
pub(super) fn node_hash(z_ok: u64, state: u32) -> u64 {
    z_ok ^ (u64::from(state) + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}
