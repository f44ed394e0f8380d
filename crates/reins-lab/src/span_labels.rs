//! Span labels from a simulated annotator (the lab's extension for Fine-Grained RLHF, research
//! note §0 and §5): the annotator marks each sentence of a response that carries an error the
//! gold parser finds in that sentence, as a span over the sentence tagged with the error:
//!
//! - `rude`: a rude sentence (politeness −1);
//! - `filler`: a filler sentence (brevity −1; the per-word length penalty is not a span);
//! - `repeated`: a sentence repeating an earlier one, or stuttering;
//! - `wrong`: the sentence that addresses the question, when the response is not correct.
//!
//! Irrelevance and ill-formedness are whole-response properties and get no span. Each sentence's
//! verdict is flipped with probability `noise` (a missed error, or a false alarm tagged
//! `error`), the annotator's mistake rate.
//!
//! Sentences are the fine-grained reward's own segments ([`Granularity::Sentence`]) of the
//! text; the gold parser cuts sentences by the same rule, and a response where the two
//! disagree gets no labels.

use rand::Rng;
use reins_data::{HfTokenizer, Span};
use reins_train::rewards::segments::{prefix_char_lengths, segment_end_tokens, Granularity};

use crate::{chat, Factor, GoldReward};

/// Completion ids to the text sentences are cut from: decoded, cut at the chat end marker (not
/// trimmed, so the character offsets are the decoded prefix's).
pub fn completion_decoder(tok: HfTokenizer) -> impl Fn(&[u32]) -> String + Clone + Send + Sync + 'static {
    let tok = std::sync::Arc::new(tok);
    move |ids: &[u32]| {
        let text = tok.decode(ids, false).unwrap_or_default();
        let cut = [chat::END, chat::ENDOFTEXT].iter().filter_map(|t| text.find(t)).min().unwrap_or(text.len());
        text[..cut].to_string()
    }
}

/// The error tags of each sentence of `response` (cut at the chat end marker), `None` when the
/// parser and the segmenter see different sentences.
pub fn sentence_errors(gold: &GoldReward, prompt: &str, response: &str) -> Option<Vec<Vec<&'static str>>> {
    let segments = Granularity::Sentence.segments(response);
    let parsed = gold.parse(prompt, response);
    if segments.len() != parsed.sentences && !(segments.is_empty() && parsed.sentences == 1) {
        return None;
    }
    let mut tags = vec![Vec::new(); segments.len()];
    let correct = parsed.factor(Factor::Correctness) > 0.0;
    // The length penalty is the parser's last brevity item when the response is over budget.
    let (text, _) = crate::chat::extract_response(response);
    let over_budget = text.split_whitespace().count() > gold.weights.length_budget;
    let length_item =
        if over_budget { parsed.evidence.iter().rposition(|e| e.factor == Factor::Brevity) } else { None };
    for (i, e) in parsed.evidence.iter().enumerate() {
        let tag = match e.factor {
            Factor::Politeness if e.value < 0.0 => "rude",
            Factor::Brevity if Some(i) != length_item => "filler",
            Factor::Repetition if e.value < 0.0 => "repeated",
            Factor::Relevance if !correct => "wrong",
            _ => continue,
        };
        if let Some(t) = tags.get_mut(e.sentence) {
            if !t.contains(&tag) {
                t.push(tag);
            }
        }
    }
    Some(tags)
}

/// The gold token error mask of a completion (research note §0): `true` on every token of a
/// sentence with an error ([`sentence_errors`]), `false` elsewhere (the end marker included).
/// `None` when the parser and the segmenter see different sentences.
pub fn token_error_mask(
    gold: &GoldReward,
    prompt: &str,
    completion: &[u32],
    decode: &dyn Fn(&[u32]) -> String,
) -> Option<Vec<bool>> {
    let text = decode(completion);
    let errors = sentence_errors(gold, prompt, &text)?;
    let ends = segment_end_tokens(&Granularity::Sentence.segments(&text), &prefix_char_lengths(completion, decode));
    let mut mask = vec![false; completion.len()];
    let mut start = 0;
    for (&end, tags) in ends.iter().zip(&errors) {
        if !tags.is_empty() {
            mask[start..=end].iter_mut().for_each(|m| *m = true);
        }
        start = end + 1;
    }
    Some(mask)
}

/// The annotator's spans on `response` (character offsets into it): one per erroneous sentence,
/// tagged with its first error, each sentence's verdict flipped with probability `noise`.
pub fn span_labels<R: Rng + ?Sized>(
    gold: &GoldReward,
    prompt: &str,
    response: &str,
    noise: f64,
    rng: &mut R,
) -> Option<Vec<Span>> {
    let errors = sentence_errors(gold, prompt, response)?;
    let segments = Granularity::Sentence.segments(response);
    let mut spans = Vec::new();
    for ((start, end), tags) in segments.into_iter().zip(errors) {
        let flip = rng.random_bool(noise.clamp(0.0, 1.0));
        let label = match (tags.first(), flip) {
            (Some(t), false) => t.to_string(),
            (None, true) => "error".to_string(),
            _ => continue,
        };
        spans.push(Span { start, end, label });
    }
    Some(spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{QualityMix, WorldConfig};
    use crate::world::{Split, World};
    use rand::SeedableRng;

    #[test]
    fn each_error_is_marked_on_its_sentence() {
        let g = GoldReward::default();
        let p = "What is 7 + 5?";
        let errs = |r: &str| sentence_errors(&g, p, r).unwrap();
        assert_eq!(errs("Sure! 7 + 5 is 12."), vec![Vec::<&str>::new(), vec![]]);
        assert_eq!(errs("7 + 5 is 13. Ugh, stop bothering me."), vec![vec!["wrong"], vec!["rude"]]);
        assert_eq!(errs("Well, I think many people know this. 12."), vec![vec!["filler"], vec![]]);
        assert_eq!(errs("It is 12. It is 12."), vec![vec![], vec!["repeated"]]);
        let chars: Vec<char> = " 7 + 5 is 13. Thanks!".chars().collect();
        let mut rng = crate::rng::LabRng::seed_from_u64(1);
        let spans = span_labels(&g, p, " 7 + 5 is 13. Thanks!", 0.0, &mut rng).unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].label, "wrong");
        assert_eq!(chars[spans[0].start..spans[0].end].iter().collect::<String>(), " 7 + 5 is 13.");
    }

    #[test]
    fn the_token_mask_covers_the_erroneous_sentence() {
        // tokens: " Ugh" " stop." " It" " is" " 12." "<|end|>"
        let pieces = [" Ugh", " stop.", " It", " is", " 12.", "<|end|>"];
        let decode = |ids: &[u32]| {
            let t: String = ids.iter().map(|&i| pieces[i as usize]).collect();
            t.split("<|end|>").next().unwrap_or_default().to_string()
        };
        let mask = token_error_mask(&GoldReward::default(), "What is 7 + 5?", &[0, 1, 2, 3, 4, 5], &decode).unwrap();
        assert_eq!(mask, [true, true, false, false, false, false]);
    }

    /// On the world's own responses the segmenter and the gold parser agree on the sentences,
    /// and a noise-free annotator's spans carry exactly the sentence-local penalties.
    #[test]
    fn world_responses_get_consistent_labels() {
        let w = World::new(3, &WorldConfig::default()).unwrap();
        let g = GoldReward::default();
        let mut rng = w.rng("span-labels");
        let mut labelled = 0;
        for p in w.prompts(Split::Train, 600) {
            let r = w.sample_response(&p, &mut rng, &QualityMix::default());
            let errs = sentence_errors(&g, &p.text, &r.text).unwrap_or_else(|| panic!("{:?}", r.text));
            let f = &r.factors;
            let count = |t: &str| errs.iter().filter(|s| s.contains(&t)).count();
            assert_eq!(count("filler"), f.padding as usize, "{}", r.text);
            assert_eq!(count("repeated") > 0, f.repeats > 0, "{}", r.text);
            assert_eq!(count("wrong") > 0, f.relevant && !f.correct, "{}", r.text);
            labelled += errs.iter().filter(|s| !s.is_empty()).count();
        }
        assert!(labelled > 100, "{labelled} erroneous sentences");
        // noise flips verdicts
        let mut rng = crate::rng::LabRng::seed_from_u64(2);
        let flipped =
            (0..200).filter(|_| !span_labels(&g, "What is 7 + 5?", "12.", 0.5, &mut rng).unwrap().is_empty()).count();
        assert!((60..140).contains(&flipped), "{flipped}");
    }
}
