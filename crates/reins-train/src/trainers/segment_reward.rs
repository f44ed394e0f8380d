//! Segment reward models (Fine-Grained RLHF, Wu et al., "Fine-Grained Human Feedback Gives
//! Better Rewards for Language Model Training", NeurIPS 2023, arXiv:2306.01693): a model with a
//! score head read at the last token of every segment (sub-sentence, sentence or response,
//! [`Granularity`]), trained on span labels — a segment that overlaps a labelled span of one of
//! the model's error types (`tags`) is an error (label 0), any other segment is not (label 1) —
//! with binary cross-entropy ([`segment_loss`]). The paper's relevance model works on
//! sub-sentences, its factuality model on sentences; each is one of these.
//!
//! The paper's classifier reads separator tokens inserted before each segment; here it reads
//! the segment's own last token, found the same way in training and in scoring
//! ([`crate::rewards::segments`]), so the policy's samples need no rewriting.
//!
//! Every checkpoint carries `segment_reward.json` (its granularity and tags) beside the
//! weights, which the fine-grained reward ([`crate::rewards::fine_grained`]) reads back.

use std::path::Path;

use candle_core::Tensor;
use reins_data::tokenize::{tokenize_prompt, Stats};
use reins_data::{HfTokenizer, Record, Span};
use reins_model::{Batch, Model};
use serde::{Deserialize, Serialize};

use super::metrics::{attended_tokens, scalar};
use super::{BatchTrainer, Metrics};
use crate::losses::{segment_loss, SegmentTarget};
use crate::optim::optimizer::Optimizer;
use crate::rewards::segments::{overlaps, prefix_char_lengths, segment_end_tokens, Granularity};
use crate::{Result, TrainError};

/// What a segment reward model judges: its granularity and the span tags that count as its
/// errors (empty: every tag). Saved as `segment_reward.json` beside the weights.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SegmentRewardSpec {
    pub granularity: Granularity,
    pub tags: Vec<String>,
}

impl SegmentRewardSpec {
    pub const FILE: &'static str = "segment_reward.json";

    /// The file a checkpoint carries: `(name, contents)`.
    pub fn to_file(&self) -> Result<(String, String)> {
        super::spec_file(Self::FILE, self)
    }

    pub fn read(dir: &Path) -> Result<Self> {
        super::read_spec(dir, Self::FILE, "reins segment-reward")
    }

    /// Whether a span with this tag is one of this model's errors.
    pub fn counts(&self, tag: &str) -> bool {
        self.tags.is_empty() || self.tags.iter().any(|t| t == tag)
    }

    /// Each segment's last token in `response_ids` (positions into the response) and its label
    /// (1 = no error): the segments of `decode(response_ids)` at this granularity, an error
    /// where one of `spans` (character offsets into that text) of a counted tag overlaps it.
    pub fn targets(
        &self,
        response_ids: &[u32],
        spans: &[Span],
        decode: &dyn Fn(&[u32]) -> String,
    ) -> Vec<(usize, f32)> {
        let text = decode(response_ids);
        let segments = self.granularity.segments(&text);
        let ends = segment_end_tokens(&segments, &prefix_char_lengths(response_ids, decode));
        segments
            .iter()
            .zip(ends)
            .map(|(&seg, end)| {
                let error = spans.iter().any(|s| self.counts(&s.label) && overlaps(seg, (s.start, s.end)));
                (end, if error { 0.0 } else { 1.0 })
            })
            .collect()
    }
}

/// One tokenized example: `prompt ++ response` ids and its segments' `(position, label)`.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentExample {
    pub ids: Vec<u32>,
    pub targets: Vec<(usize, f32)>,
}

/// Span records (`Record::Spans`) into examples: the prompt as the policy sees it
/// ([`tokenize_prompt`]), the response's tokens plus EOS, segments found on the decoded
/// response. Other records, and responses with no segment, are dropped and counted.
pub fn tokenize_segment_dataset(
    tok: &HfTokenizer,
    records: &[Record],
    spec: &SegmentRewardSpec,
    max_length: Option<usize>,
) -> Result<(Vec<SegmentExample>, Stats)> {
    let eos = tok.eos_id().ok_or_else(|| {
        TrainError::Config("segment reward: the tokenizer has no EOS token to end each response with".into())
    })?;
    let decode = |ids: &[u32]| tok.decode(ids, true).unwrap_or_default();
    let mut stats = Stats::default();
    let mut out = Vec::new();
    for r in records {
        let Record::Spans { prompt, response, spans, .. } = r else {
            stats.drop(&format!("{} is not a span-labelled response", r.kind().name()));
            continue;
        };
        let prompt_ids = tokenize_prompt(tok, prompt)?;
        let mut response_ids = tok.encode(response, false)?;
        response_ids.push(eos);
        let ids = [prompt_ids.as_slice(), &response_ids].concat();
        if max_length.is_some_and(|m| ids.len() > m) {
            stats.drop("longer than max_length");
            continue;
        }
        let targets: Vec<(usize, f32)> =
            spec.targets(&response_ids, spans, &decode).into_iter().map(|(p, y)| (prompt_ids.len() + p, y)).collect();
        if targets.is_empty() {
            stats.drop("the response has no segment");
            continue;
        }
        stats.kept += 1;
        out.push(SegmentExample { ids, targets });
    }
    Ok((out, stats))
}

/// A right-padded batch of examples with its segment targets.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentBatch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<u8>>,
    pub targets: Vec<SegmentTarget>,
}

pub fn collate_segments(examples: &[SegmentExample], pad_id: u32) -> SegmentBatch {
    let rows: Vec<Vec<u32>> = examples.iter().map(|e| e.ids.clone()).collect();
    let batch = Batch::right_padded(&rows, pad_id);
    let targets = examples
        .iter()
        .enumerate()
        .flat_map(|(row, e)| e.targets.iter().map(move |&(pos, label)| SegmentTarget { row, pos, label }))
        .collect();
    SegmentBatch { input_ids: batch.ids, attention_mask: batch.mask, targets }
}

/// Binary cross-entropy of the score head at chosen positions: the segment reward model, and
/// the principle reward model ([`super::principle_reward`]), whose one target is the last token.
pub struct SegmentRewardTrainer {
    pub model: Model,
    pub opt: Optimizer,
    pub num_tokens: f64,
    /// What the model judges (`segment_reward.json` or `principle_reward.json`, as
    /// `(name, contents)`); written into every checkpoint.
    pub files: Vec<(String, String)>,
}

impl SegmentRewardTrainer {
    pub fn new(model: Model, opt: Optimizer, files: Vec<(String, String)>) -> Result<Self> {
        if model.score.is_none() {
            return Err(TrainError::Config("segment reward: the model needs a score head (`score_head: 1`)".into()));
        }
        Ok(SegmentRewardTrainer { model, opt, num_tokens: 0.0, files })
    }

    /// The score head's first label at every token, `[B, T]`.
    pub fn token_scores(&self, batch: &SegmentBatch) -> Result<Tensor> {
        let b = Batch::new(batch.input_ids.clone(), batch.attention_mask.clone())?;
        Ok(self.model.token_scores(&b)?.narrow(2, 0, 1)?.squeeze(2)?)
    }
}

impl BatchTrainer for SegmentRewardTrainer {
    type Batch = SegmentBatch;

    /// Loss, `accuracy` (the sign of each segment's logit against its label), `error_rate`
    /// (labels that are errors) and `num_tokens`.
    fn batch_loss(&self, batch: &SegmentBatch) -> Result<(Tensor, Metrics)> {
        let out = segment_loss(&self.token_scores(batch)?, &batch.targets)?;
        let z = out.logits.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        let n = batch.targets.len() as f64;
        let right = z.iter().zip(&batch.targets).filter(|(z, t)| (**z > 0.0) == (t.label > 0.5)).count();
        let errors = batch.targets.iter().filter(|t| t.label <= 0.5).count();
        let mut m = Metrics::new();
        m.insert("loss".into(), scalar(&out.loss)?);
        m.insert("accuracy".into(), right as f64 / n);
        m.insert("error_rate".into(), errors as f64 / n);
        m.insert("num_tokens".into(), attended_tokens(&batch.attention_mask));
        Ok((out.loss, m))
    }
    fn model(&self) -> &Model {
        &self.model
    }
    fn optimizer(&mut self) -> &mut Optimizer {
        &mut self.opt
    }
    fn num_tokens(&mut self) -> &mut f64 {
        &mut self.num_tokens
    }
    fn model_files(&self) -> Result<Vec<(String, String)>> {
        Ok(self.files.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(ids: &[u32]) -> String {
        const PIECES: [&str; 6] = ["Sure", ".", " Ugh", ", stop", "!", "</s>"];
        ids.iter().filter(|&&i| i != 5).map(|&i| PIECES[i as usize]).collect()
    }

    #[test]
    fn segments_overlapping_a_counted_span_are_errors() {
        // "Sure. Ugh, stop!" + EOS; a rude span over "Ugh" (chars 6..9)
        let ids = [0, 1, 2, 3, 4, 5];
        let spans = [Span { start: 6, end: 9, label: "rude".into() }];
        let sentence = SegmentRewardSpec { granularity: Granularity::Sentence, tags: vec![] };
        assert_eq!(sentence.targets(&ids, &spans, &decode), [(1, 1.0), (4, 0.0)]);
        let clause = SegmentRewardSpec { granularity: Granularity::SubSentence, tags: vec!["rude".into()] };
        assert_eq!(
            clause.targets(&ids, &spans, &decode),
            [(1, 1.0), (3, 0.0), (4, 1.0)],
            "\" Ugh,\" ends inside \", stop\""
        );
        let other = SegmentRewardSpec { granularity: Granularity::Sentence, tags: vec!["wrong".into()] };
        assert_eq!(other.targets(&ids, &spans, &decode), [(1, 1.0), (4, 1.0)], "other tags do not count");
        let whole = SegmentRewardSpec { granularity: Granularity::Response, tags: vec![] };
        assert_eq!(whole.targets(&ids, &spans, &decode), [(4, 0.0)]);
    }

    #[test]
    fn collated_targets_point_at_their_rows() {
        let ex = [
            SegmentExample { ids: vec![1, 2, 3], targets: vec![(2, 1.0)] },
            SegmentExample { ids: vec![4, 5], targets: vec![(0, 0.0), (1, 1.0)] },
        ];
        let b = collate_segments(&ex, 0);
        assert_eq!(b.input_ids, vec![vec![1, 2, 3], vec![4, 5, 0]]);
        assert_eq!(b.attention_mask, vec![vec![1, 1, 1], vec![1, 1, 0]]);
        assert_eq!(
            b.targets,
            vec![
                SegmentTarget { row: 0, pos: 2, label: 1.0 },
                SegmentTarget { row: 1, pos: 0, label: 0.0 },
                SegmentTarget { row: 1, pos: 1, label: 1.0 },
            ]
        );
    }

    #[test]
    fn the_spec_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SegmentRewardSpec { granularity: Granularity::SubSentence, tags: vec!["irrelevant".into()] };
        let (name, text) = spec.to_file().unwrap();
        std::fs::write(dir.path().join(name), text).unwrap();
        assert_eq!(SegmentRewardSpec::read(dir.path()).unwrap(), spec);
        assert!(SegmentRewardSpec::read(&dir.path().join("missing")).is_err());
    }
}
