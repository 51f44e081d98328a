//! External merge sort with bounded memory: records are buffered up to a byte budget,
//! each full buffer is sorted and written to a temporary file (a run), and the runs are
//! merged k-way when read back. A quarter of 10M rows does not fit the export's memory
//! bound (issue #10: peak RSS < 300 MB), so every whole-quarter ordering goes through
//! here: the source rows by customer, the transaction rows by time, the customer rows by
//! key.
//!
//! Deterministic: the sort orders of the export are total (their keys are unique), the
//! in-memory sort has no randomness, and the merge breaks ties by run number, so the
//! same records pushed in the same order always come out in the same order.
//!
//! Records encode themselves ([`Record::encode`]) in a private little-endian format
//! that only lives as long as the sort; [`Codec`] holds the helpers.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use compact_str::CompactString;

/// Something the sorter can order, spill and read back.
pub(crate) trait Record: Sized + Clone {
    /// The sort order (a total order; ties keep push order).
    fn order(&self, other: &Self) -> Ordering;
    /// Appends the record's bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads a record back from the bytes [`Record::encode`] wrote.
    ///
    /// # Errors
    /// `InvalidData` when the bytes are not a record (a damaged temporary file).
    fn decode(input: &mut Codec<'_>) -> io::Result<Self>;
    /// Approximate bytes the record holds in memory (its size and its heap).
    fn mem_size(&self) -> usize;
}

/// Buffers, sorts and spills records; [`Sorter::finish`] gives them back in order.
#[derive(Debug)]
pub(crate) struct Sorter<T: Record> {
    dir: PathBuf,
    name: &'static str,
    budget: usize,
    buffer: Vec<T>,
    used: usize,
    runs: Vec<PathBuf>,
    scratch: Vec<u8>,
}

impl<T: Record> Sorter<T> {
    /// A sorter spilling into `dir` once its records hold more than `budget` bytes.
    pub(crate) fn new(dir: &Path, name: &'static str, budget: usize) -> Sorter<T> {
        Sorter {
            dir: dir.to_owned(),
            name,
            budget,
            buffer: Vec::new(),
            used: 0,
            runs: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Adds a record.
    ///
    /// # Errors
    /// Writing a run failed (disk full, folder gone).
    pub(crate) fn push(&mut self, record: T) -> io::Result<()> {
        if self.buffer.capacity() == 0 {
            // Reserved once, so the buffer never doubles past the budget.
            self.buffer
                .reserve_exact((self.budget / std::mem::size_of::<T>().max(1)).min(1 << 24));
        }
        self.used += record.mem_size();
        self.buffer.push(record);
        if self.used > self.budget {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> io::Result<()> {
        // Unstable: no extra buffer of half the records (a stable sort's), and still
        // deterministic: the same records in the same push order sort the same way.
        self.buffer.sort_unstable_by(T::order);
        let path = self
            .dir
            .join(format!("{}-{:04}.run", self.name, self.runs.len()));
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        for r in self.buffer.drain(..) {
            self.scratch.clear();
            r.encode(&mut self.scratch);
            out.write_all(&(self.scratch.len() as u32).to_le_bytes())?;
            out.write_all(&self.scratch)?;
        }
        out.into_inner().map_err(io::IntoInnerError::into_error)?;
        self.used = 0;
        self.runs.push(path);
        tracing::debug!(
            sorter = self.name,
            runs = self.runs.len(),
            "Spilled a sorted run."
        );
        Ok(())
    }

    /// Number of runs written so far (0: everything is in memory).
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// The records in order, readable any number of times.
    ///
    /// # Errors
    /// Writing the last run failed.
    pub(crate) fn finish(mut self) -> io::Result<Sorted<T>> {
        if self.runs.is_empty() {
            self.buffer.sort_unstable_by(T::order);
            return Ok(Sorted::Memory(self.buffer));
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        self.buffer = Vec::new();
        Ok(Sorted::Runs(self.runs))
    }
}

/// Sorted records: in memory, or in run files merged on reading.
#[derive(Debug)]
pub(crate) enum Sorted<T> {
    /// Everything fitted the budget.
    Memory(Vec<T>),
    /// Sorted runs on disk.
    Runs(Vec<PathBuf>),
}

impl<T: Record> Sorted<T> {
    /// Iterates in order (opens the runs afresh each time).
    ///
    /// # Errors
    /// A run cannot be opened.
    pub(crate) fn iter(&self) -> io::Result<Merge<'_, T>> {
        match self {
            Sorted::Memory(v) => Ok(Merge::Memory(v.iter())),
            Sorted::Runs(paths) => {
                let mut readers = Vec::with_capacity(paths.len());
                let mut heads = Vec::with_capacity(paths.len());
                for path in paths {
                    let mut reader = RunReader {
                        input: BufReader::with_capacity(256 * 1024, File::open(path)?),
                        buf: Vec::new(),
                    };
                    heads.push(reader.next_record()?);
                    readers.push(reader);
                }
                let mut merge = RunMerge {
                    readers,
                    heads,
                    heap: Vec::with_capacity(paths.len()),
                };
                for run in 0..merge.heads.len() {
                    if merge.heads[run].is_some() {
                        merge.heap.push(run);
                        merge.sift_up(merge.heap.len() - 1);
                    }
                }
                Ok(Merge::Runs(merge))
            }
        }
    }
}

/// Reads one run file record by record.
pub(crate) struct RunReader {
    input: BufReader<File>,
    buf: Vec<u8>,
}

impl RunReader {
    fn next_record<T: Record>(&mut self) -> io::Result<Option<T>> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        self.buf.resize(u32::from_le_bytes(len) as usize, 0);
        self.input.read_exact(&mut self.buf)?;
        let mut codec = Codec {
            input: &self.buf[..],
        };
        T::decode(&mut codec).map(Some)
    }
}

/// K-way merge of runs: a binary min-heap of run numbers, each run's next record in
/// `heads`, so sifting moves indices, not records (records are 150-200 bytes).
pub(crate) struct RunMerge<T> {
    readers: Vec<RunReader>,
    heads: Vec<Option<T>>,
    heap: Vec<usize>,
}

impl<T: Record> RunMerge<T> {
    /// Whether run `a`'s head comes before run `b`'s: by record, ties to the earlier
    /// run (which holds the earlier pushed records).
    fn before(&self, a: usize, b: usize) -> bool {
        match (&self.heads[a], &self.heads[b]) {
            (Some(x), Some(y)) => x.order(y).then(a.cmp(&b)) == Ordering::Less,
            _ => false,
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        while i > 0 {
            let parent = (i - 1) / 2;
            if !self.before(self.heap[i], self.heap[parent]) {
                break;
            }
            self.heap.swap(i, parent);
            i = parent;
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut least = i;
            if l < n && self.before(self.heap[l], self.heap[least]) {
                least = l;
            }
            if r < n && self.before(self.heap[r], self.heap[least]) {
                least = r;
            }
            if least == i {
                return;
            }
            self.heap.swap(i, least);
            i = least;
        }
    }

    fn next(&mut self) -> Option<io::Result<T>> {
        let run = *self.heap.first()?;
        let next = match self.readers[run].next_record() {
            Ok(next) => next,
            Err(e) => return Some(Err(e)),
        };
        let record = std::mem::replace(&mut self.heads[run], next);
        if self.heads[run].is_none() {
            let last = self.heap.len() - 1;
            self.heap.swap(0, last);
            self.heap.pop();
        }
        self.sift_down(0);
        record.map(Ok)
    }
}

/// The records of a [`Sorted`] in order.
pub(crate) enum Merge<'a, T> {
    /// From memory.
    Memory(std::slice::Iter<'a, T>),
    /// K-way merge of runs.
    Runs(RunMerge<T>),
}

impl<T: Record> Iterator for Merge<'_, T> {
    type Item = io::Result<T>;

    fn next(&mut self) -> Option<io::Result<T>> {
        match self {
            Merge::Memory(it) => it.next().cloned().map(Ok),
            Merge::Runs(m) => m.next(),
        }
    }
}

/// Reads the fields of one encoded record.
#[derive(Debug)]
pub(crate) struct Codec<'a> {
    input: &'a [u8],
}

fn damaged() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "damaged sort run")
}

impl<'a> Codec<'a> {
    /// Reads from `input`.
    #[cfg(test)]
    pub(crate) fn new(input: &'a [u8]) -> Codec<'a> {
        Codec { input }
    }

    /// Whether every byte was read.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.input.is_empty()
    }

    fn take<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let (head, rest) = self.input.split_first_chunk::<N>().ok_or_else(damaged)?;
        self.input = rest;
        Ok(*head)
    }

    pub(crate) fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take::<1>()?[0])
    }

    pub(crate) fn i32(&mut self) -> io::Result<i32> {
        Ok(i32::from_le_bytes(self.take()?))
    }

    pub(crate) fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(self.take()?))
    }

    pub(crate) fn i128(&mut self) -> io::Result<i128> {
        Ok(i128::from_le_bytes(self.take()?))
    }

    pub(crate) fn u128(&mut self) -> io::Result<u128> {
        Ok(u128::from_le_bytes(self.take()?))
    }

    pub(crate) fn f64(&mut self) -> io::Result<f64> {
        Ok(f64::from_le_bytes(self.take()?))
    }

    pub(crate) fn str(&mut self) -> io::Result<CompactString> {
        let len = u32::from_le_bytes(self.take()?) as usize;
        if len > self.input.len() {
            return Err(damaged());
        }
        let (s, rest) = self.input.split_at(len);
        self.input = rest;
        let s = std::str::from_utf8(s).map_err(|_| damaged())?;
        Ok(CompactString::from(s))
    }

    /// A flag byte, then the value when the flag is 1.
    pub(crate) fn opt<V>(
        &mut self,
        read: impl FnOnce(&mut Self) -> io::Result<V>,
    ) -> io::Result<Option<V>> {
        match self.u8()? {
            0 => Ok(None),
            1 => read(self).map(Some),
            _ => Err(damaged()),
        }
    }
}

/// Writers matching [`Codec`]'s readers.
pub(crate) mod put {
    use compact_str::CompactString;

    pub(crate) fn i32(out: &mut Vec<u8>, v: i32) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i64(out: &mut Vec<u8>, v: i64) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn i128(out: &mut Vec<u8>, v: i128) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn u128(out: &mut Vec<u8>, v: u128) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn f64(out: &mut Vec<u8>, v: f64) {
        out.extend_from_slice(&v.to_le_bytes());
    }

    pub(crate) fn str(out: &mut Vec<u8>, v: &str) {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }

    pub(crate) fn opt<V>(out: &mut Vec<u8>, v: Option<V>, write: impl FnOnce(&mut Vec<u8>, V)) {
        match v {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                write(out, v);
            }
        }
    }

    pub(crate) fn opt_str(out: &mut Vec<u8>, v: Option<&CompactString>) {
        opt(out, v, |o, s| str(o, s));
    }
}

/// Heap bytes of a string beyond its inline size (0 for short ones).
pub(crate) fn heap_of(s: &CompactString) -> usize {
    if s.is_heap_allocated() {
        s.capacity()
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Pair {
        key: CompactString,
        seq: i64,
    }

    impl Record for Pair {
        fn order(&self, other: &Self) -> Ordering {
            // Total, like the export's orders.
            self.key
                .as_bytes()
                .cmp(other.key.as_bytes())
                .then(self.seq.cmp(&other.seq))
        }
        fn encode(&self, out: &mut Vec<u8>) {
            put::str(out, &self.key);
            put::i64(out, self.seq);
        }
        fn decode(input: &mut Codec<'_>) -> io::Result<Self> {
            Ok(Pair {
                key: input.str()?,
                seq: input.i64()?,
            })
        }
        fn mem_size(&self) -> usize {
            std::mem::size_of::<Self>() + heap_of(&self.key)
        }
    }

    fn sorted_with_budget(budget: usize, n: i64) -> (usize, Vec<Pair>) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Sorter::new(dir.path(), "pairs", budget);
        for i in 0..n {
            // Many equal keys: the runs hold interleaved ranges of them.
            let key = format!("k{:03}", (i * 7919) % 97);
            s.push(Pair {
                key: key.into(),
                seq: i,
            })
            .unwrap();
        }
        let runs = s.runs();
        let sorted = s.finish().unwrap();
        let first: Vec<Pair> = sorted.iter().unwrap().map(Result::unwrap).collect();
        let again: Vec<Pair> = sorted.iter().unwrap().map(Result::unwrap).collect();
        assert_eq!(first, again, "readable twice");
        (runs, first)
    }

    #[test]
    fn spilled_and_in_memory_sorts_agree() {
        let (runs_mem, in_memory) = sorted_with_budget(usize::MAX, 5000);
        let (runs_disk, spilled) = sorted_with_budget(2000, 5000);
        assert_eq!(runs_mem, 0);
        assert!(runs_disk > 10, "{runs_disk} runs");
        assert_eq!(in_memory, spilled);
        for w in spilled.windows(2) {
            assert!(
                (w[0].key.as_str(), w[0].seq) < (w[1].key.as_str(), w[1].seq),
                "{w:?}"
            );
        }
        assert_eq!(spilled.len(), 5000);
    }

    #[test]
    fn a_damaged_run_is_an_error_not_a_panic() {
        let mut c = Codec { input: &[5, 0, 0] };
        assert!(c.str().is_err());
        let mut c = Codec { input: &[2] };
        assert!(c.opt(Codec::u8).is_err());
    }
}
