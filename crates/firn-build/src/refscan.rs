//! Finding references in build outputs: which of the candidate store paths' hash parts occur in
//! the NAR serialisation of an output (file contents, names and symlink targets), as CppNix
//! scans them. [`ScanSink`] hashes the NAR at the same time, so an output is read once.

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};

use firn_format::{Hash, HashAlgo, Hasher, StorePath};

/// Length of a store path's hash part.
const HASH_LEN: usize = 32;

fn is_nix32(c: u8) -> bool {
    // nixbase32's alphabet: digits and lower-case letters except e, o, u and t.
    matches!(c, b'0'..=b'9' | b'a'..=b'z') && !matches!(c, b'e' | b'o' | b'u' | b't')
}

/// A `Write` sink that looks for hash parts in everything written to it.
pub struct Scanner {
    candidates: HashMap<[u8; HASH_LEN], StorePath>,
    found: BTreeSet<StorePath>,
    /// The last `HASH_LEN - 1` bytes of the previous chunk, so a hash split across writes is
    /// still seen.
    tail: Vec<u8>,
}

impl Scanner {
    pub fn new<'a>(candidates: impl IntoIterator<Item = &'a StorePath>) -> Scanner {
        let mut map = HashMap::new();
        for p in candidates {
            let mut k = [0u8; HASH_LEN];
            k.copy_from_slice(p.hash_part().as_bytes());
            map.insert(k, p.clone());
        }
        Scanner {
            candidates: map,
            found: BTreeSet::new(),
            tail: Vec::new(),
        }
    }

    fn scan(&mut self, data: &[u8]) {
        if self.candidates.is_empty() {
            return;
        }
        let mut i = 0;
        while i + HASH_LEN <= data.len() {
            // Look backwards from the end of the window for a character that cannot be part
            // of a hash; if there is one, no window containing it can match.
            let mut j = i + HASH_LEN;
            let mut ok = true;
            while j > i {
                j -= 1;
                if !is_nix32(data[j]) {
                    i = j + 1;
                    ok = false;
                    break;
                }
            }
            if !ok {
                continue;
            }
            let mut k = [0u8; HASH_LEN];
            k.copy_from_slice(&data[i..i + HASH_LEN]);
            if let Some(p) = self.candidates.get(&k) {
                self.found.insert(p.clone());
            }
            i += 1;
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        let mut tail = std::mem::take(&mut self.tail);
        if !tail.is_empty() {
            // Windows that straddle earlier chunks and this one.
            let take = data.len().min(HASH_LEN - 1);
            let mut joined = tail.clone();
            joined.extend_from_slice(&data[..take]);
            self.scan(&joined);
        }
        self.scan(data);
        // Keep the last HASH_LEN - 1 bytes seen so far.
        tail.extend_from_slice(&data[data.len().saturating_sub(HASH_LEN - 1)..]);
        let excess = tail.len().saturating_sub(HASH_LEN - 1);
        tail.drain(..excess);
        self.tail = tail;
    }

    pub fn found(self) -> BTreeSet<StorePath> {
        self.found
    }
}

/// Hash a NAR stream with SHA-256, count its bytes and scan it for references.
pub struct ScanSink {
    pub hasher: Hasher,
    pub scanner: Scanner,
}

impl ScanSink {
    pub fn new<'a>(candidates: impl IntoIterator<Item = &'a StorePath>) -> ScanSink {
        ScanSink {
            hasher: Hasher::new(HashAlgo::Sha256),
            scanner: Scanner::new(candidates),
        }
    }

    /// The NAR hash, NAR size and the references found.
    pub fn finish(self) -> (Hash, u64, BTreeSet<StorePath>) {
        let n = self.hasher.len();
        (self.hasher.finish(), n, self.scanner.found())
    }
}

impl Write for ScanSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.scanner.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sp(s: &str) -> StorePath {
        StorePath::from_base_name(s).unwrap()
    }

    #[test]
    fn finds_hashes_even_across_chunks() {
        let a = sp("7rjj86a15146cq1d3qy068lml7n8ykzm-a");
        let b = sp("ffffffffffffffffffffffffffffffff-b");
        let c = sp("00000000000000000000000000000000-c");
        let text = format!("xx/nix/store/{}-a/bin yy{}zz", a.hash_part(), b.hash_part());
        for chunk in [1, 3, 7, 31, 32, 33, 1000] {
            let mut s = Scanner::new([&a, &b, &c]);
            for part in text.as_bytes().chunks(chunk) {
                s.update(part);
            }
            let found = s.found();
            assert!(found.contains(&a) && found.contains(&b), "chunk {chunk}");
            assert!(!found.contains(&c), "chunk {chunk}");
        }
    }

    #[test]
    fn a_hash_inside_a_longer_run_still_counts() {
        let a = sp("7rjj86a15146cq1d3qy068lml7n8ykzm-a");
        let mut s = Scanner::new([&a]);
        s.update(format!("abc{}def", a.hash_part()).as_bytes());
        assert_eq!(s.found().len(), 1);
    }
}
