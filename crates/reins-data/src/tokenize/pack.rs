//! SFT packing (TRL `pack_dataset`): `bfd` (best-fit decreasing, overflow truncated),
//! `bfd_split` (overflow split into more pieces) and `wrapped` (cut every `seq_length`
//! tokens). Like TRL (which packs inside `Dataset.map(batched=True)`), packing works on
//! chunks of [`TRL_MAP_BATCH`] examples; see [`pack_dataset`].

use super::sft::SftIds;
use std::collections::{BTreeMap, VecDeque};

/// `datasets.Dataset.map`'s default batch size: TRL packs each 1000-example batch separately.
pub const TRL_MAP_BATCH: usize = 1000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PackingStrategy {
    #[default]
    Bfd,
    BfdSplit,
    Wrapped,
}

impl std::str::FromStr for PackingStrategy {
    type Err = crate::DataError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bfd" => Ok(Self::Bfd),
            "bfd_split" | "bfd-split" => Ok(Self::BfdSplit),
            "wrapped" => Ok(Self::Wrapped),
            _ => {
                Err(crate::DataError::Invalid(format!("unknown packing strategy `{s}`; use bfd, bfd_split or wrapped")))
            }
        }
    }
}

/// A packed row: several sequences back to back, with their lengths (for position ids
/// that restart at each sequence). `wrapped` packing has no boundaries: `seq_lengths` is
/// the whole row.
#[derive(Clone, Debug, PartialEq)]
pub struct Packed {
    pub input_ids: Vec<u32>,
    pub labels: Vec<i64>,
    pub seq_lengths: Vec<usize>,
}

/// Pack all examples, chunk by chunk of [`TRL_MAP_BATCH`], as TRL does.
pub fn pack_dataset(examples: &[SftIds], seq_length: usize, strategy: PackingStrategy) -> Vec<Packed> {
    examples.chunks(TRL_MAP_BATCH).flat_map(|c| pack(c, seq_length, strategy)).collect()
}

/// Pack one batch of examples into rows of at most `seq_length` tokens.
pub fn pack(examples: &[SftIds], seq_length: usize, strategy: PackingStrategy) -> Vec<Packed> {
    if seq_length == 0 {
        return Vec::new();
    }
    match strategy {
        PackingStrategy::Wrapped => wrapped(examples, seq_length),
        PackingStrategy::Bfd => bfd(fragments(examples, seq_length, false), seq_length),
        PackingStrategy::BfdSplit => bfd(fragments(examples, seq_length, true), seq_length),
    }
}

fn wrapped(examples: &[SftIds], seq_length: usize) -> Vec<Packed> {
    let ids: Vec<u32> = examples.iter().flat_map(|e| e.input_ids.iter().copied()).collect();
    let labels: Vec<i64> = examples.iter().flat_map(|e| e.labels.iter().copied()).collect();
    ids.chunks(seq_length)
        .zip(labels.chunks(seq_length))
        .map(|(i, l)| Packed { input_ids: i.to_vec(), labels: l.to_vec(), seq_lengths: vec![i.len()] })
        .collect()
}

/// Non-empty sequences, truncated to `seq_length` or split into pieces of it.
fn fragments(examples: &[SftIds], seq_length: usize, split: bool) -> Vec<(Vec<u32>, Vec<i64>)> {
    let mut out = Vec::new();
    for e in examples.iter().filter(|e| !e.input_ids.is_empty()) {
        if !split {
            let n = e.input_ids.len().min(seq_length);
            out.push((e.input_ids[..n].to_vec(), e.labels[..n.min(e.labels.len())].to_vec()));
            continue;
        }
        let len = e.input_ids.len();
        let pieces = len.div_ceil(seq_length);
        // TRL's offsets: pieces of `seq_length`, the last piece of each sequence shorter.
        let bounds: Vec<usize> = (0..pieces).map(|k| k * seq_length).chain(std::iter::once(len)).collect();
        for w in bounds.windows(2) {
            out.push((
                e.input_ids[w[0]..w[1]].to_vec(),
                e.labels[w[0].min(e.labels.len())..w[1].min(e.labels.len())].to_vec(),
            ));
        }
    }
    out
}

/// Best-fit decreasing, replaying TRL's `_pack_bfd`: sort by length descending (stable),
/// put each sequence into the bin with the least space that fits it (oldest such bin first),
/// else open a new bin.
fn bfd(seqs: Vec<(Vec<u32>, Vec<i64>)>, seq_length: usize) -> Vec<Packed> {
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by(|&a, &b| seqs[b].0.len().cmp(&seqs[a].0.len()));
    let mut bins: Vec<Vec<usize>> = Vec::new();
    // remaining space -> bins with exactly that space, oldest first
    let mut space_to_bin: BTreeMap<usize, VecDeque<usize>> = BTreeMap::new();
    for idx in order {
        let len = seqs[idx].0.len();
        let found = space_to_bin.range(len..seq_length).find(|(_, q)| !q.is_empty()).map(|(&s, _)| s);
        let (bin, space) = match found {
            Some(space) => {
                let q = space_to_bin.get_mut(&space).expect("key exists");
                let bin = q.pop_front().expect("non-empty");
                if q.is_empty() {
                    space_to_bin.remove(&space);
                }
                (bin, space)
            }
            None => {
                bins.push(Vec::new());
                (bins.len() - 1, seq_length)
            }
        };
        bins[bin].push(idx);
        space_to_bin.entry(space - len).or_default().push_back(bin);
    }
    bins.into_iter()
        .map(|b| {
            let mut p = Packed { input_ids: Vec::new(), labels: Vec::new(), seq_lengths: Vec::new() };
            for i in b {
                p.input_ids.extend(&seqs[i].0);
                p.labels.extend(&seqs[i].1);
                p.seq_lengths.push(seqs[i].0.len());
            }
            p
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32]) -> SftIds {
        SftIds { input_ids: ids.to_vec(), labels: ids.iter().map(|&x| x as i64).collect() }
    }

    /// The examples in TRL's `pack_dataset` docstring.
    #[test]
    fn matches_trl_docstring() {
        let data = [ex(&[1, 2, 3, 4, 5]), ex(&[6, 7]), ex(&[8, 9, 10]), ex(&[11])];
        let p = pack(&data, 4, PackingStrategy::Bfd);
        let ids: Vec<_> = p.iter().map(|p| p.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![8, 9, 10, 11], vec![6, 7]]);
        let lens: Vec<_> = p.iter().map(|p| p.seq_lengths.clone()).collect();
        assert_eq!(lens, vec![vec![4], vec![3, 1], vec![2]]);

        let p = pack(&data, 4, PackingStrategy::BfdSplit);
        let ids: Vec<_> = p.iter().map(|p| p.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![8, 9, 10, 5], vec![6, 7, 11]]);
        let lens: Vec<_> = p.iter().map(|p| p.seq_lengths.clone()).collect();
        assert_eq!(lens, vec![vec![4], vec![3, 1], vec![2, 1]]);

        let p = pack(&data, 4, PackingStrategy::Wrapped);
        let ids: Vec<_> = p.iter().map(|p| p.input_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9, 10, 11]]);
    }
}
