//! Segments of a response for fine-grained rewards (Wu et al., "Fine-Grained Human Feedback
//! Gives Better Rewards for Language Model Training", NeurIPS 2023, arXiv:2306.01693): cut the
//! decoded text into sub-sentences, sentences or the whole response, and find the token each
//! segment ends at — where a segment reward model reads its verdict and where the policy gets
//! the segment's reward.
//!
//! The paper splits with spaCy; this splitter is rule-based, so it needs no model:
//! - a **sentence** ends at `.`, `!` or `?` followed by whitespace or the end of the text;
//! - a **sub-sentence** also ends at `,`, `;` or `:` followed by whitespace;
//! - the **response** is one segment.
//!
//! Whitespace between segments belongs to the next one; segments with no visible character are
//! dropped. Offsets are in characters (Unicode scalar values), as span labels are.
//!
//! Token positions come from decoding prefixes of the completion: segment `[s, e)` ends at the
//! first token whose prefix decodes to at least `e` characters. So the mapping is the same when
//! the reward model is trained (on tokenized span data) and when it scores the policy's samples
//! (token ids decoded), whatever the tokenizer.

use serde::{Deserialize, Serialize};

/// How finely a response is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    /// Clauses: sentence ends and `,`/`;`/`:` followed by whitespace.
    SubSentence,
    /// Sentences (default).
    #[default]
    Sentence,
    /// The whole response.
    Response,
}

impl Granularity {
    /// The segments of `text` as character ranges `[start, end)`, in order, covering every
    /// visible character.
    pub fn segments(self, text: &str) -> Vec<(usize, usize)> {
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        let mut start = 0;
        for (i, c) in chars.iter().enumerate() {
            let next_blank = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
            let ends = match self {
                Granularity::Response => false,
                Granularity::Sentence => matches!(c, '.' | '!' | '?') && next_blank,
                Granularity::SubSentence => matches!(c, '.' | '!' | '?' | ',' | ';' | ':') && next_blank,
            };
            if ends {
                out.push((start, i + 1));
                start = i + 1;
            }
        }
        out.push((start, chars.len()));
        out.retain(|&(s, e)| chars[s..e].iter().any(|c| !c.is_whitespace()));
        out
    }
}

/// The number of characters each prefix `ids[..=k]` decodes to (non-decreasing).
pub fn prefix_char_lengths(ids: &[u32], decode: &dyn Fn(&[u32]) -> String) -> Vec<usize> {
    let mut out = Vec::with_capacity(ids.len());
    let mut longest = 0;
    for k in 0..ids.len() {
        // A token that completes a multi-byte character can shorten a lossy decode: keep monotone.
        longest = longest.max(decode(&ids[..=k]).chars().count());
        out.push(longest);
    }
    out
}

/// The completion token at which each segment ends: the first token whose prefix covers the
/// segment's last character. Segments the tokens never reach (a decode shorter than the text)
/// end at the last token. Empty `prefix_lengths`: no positions.
pub fn segment_end_tokens(segments: &[(usize, usize)], prefix_lengths: &[usize]) -> Vec<usize> {
    if prefix_lengths.is_empty() {
        return Vec::new();
    }
    let last = prefix_lengths.len() - 1;
    segments.iter().map(|&(_, end)| prefix_lengths.partition_point(|&n| n < end).min(last)).collect()
}

/// Whether segment `[s, e)` overlaps a labelled span `[a, b)` (an empty span marks the
/// character it sits on).
pub fn overlaps((s, e): (usize, usize), (a, b): (usize, usize)) -> bool {
    let b = b.max(a + 1);
    a < e && s < b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(g: Granularity, t: &str) -> Vec<String> {
        let chars: Vec<char> = t.chars().collect();
        g.segments(t).into_iter().map(|(s, e)| chars[s..e].iter().collect()).collect()
    }

    #[test]
    fn sentences_sub_sentences_and_the_whole_response() {
        let t = "Sure, 7 + 5 is 12. Ugh: stop asking!  Why?";
        assert_eq!(texts(Granularity::Sentence, t), ["Sure, 7 + 5 is 12.", " Ugh: stop asking!", "  Why?"]);
        assert_eq!(texts(Granularity::SubSentence, t), ["Sure,", " 7 + 5 is 12.", " Ugh:", " stop asking!", "  Why?"]);
        assert_eq!(texts(Granularity::Response, t), [t]);
        // no final punctuation, a decimal point and trailing whitespace
        assert_eq!(texts(Granularity::Sentence, "It is 3.5 now. and then "), ["It is 3.5 now.", " and then "]);
        assert!(Granularity::Sentence.segments("  ").is_empty());
        assert!(Granularity::Sentence.segments("").is_empty());
    }

    #[test]
    fn segments_cover_every_visible_character_in_order() {
        for t in ["a. b! c? d", "ü東. ñ, x; y: z", "...", "a.b. c", " . . "] {
            for g in [Granularity::SubSentence, Granularity::Sentence, Granularity::Response] {
                let segs = g.segments(t);
                let mut prev = 0;
                for &(s, e) in &segs {
                    assert!(prev <= s && s < e, "{t:?} {g:?} {segs:?}");
                    prev = e;
                }
                let chars: Vec<char> = t.chars().collect();
                let covered: usize =
                    segs.iter().map(|&(s, e)| chars[s..e].iter().filter(|c| !c.is_whitespace()).count()).sum();
                assert_eq!(covered, chars.iter().filter(|c| !c.is_whitespace()).count(), "{t:?} {g:?}");
            }
        }
    }

    #[test]
    fn segment_ends_map_to_the_token_that_completes_them() {
        // tokens: "Hi" "." " Yo" "u" "!" → prefix lengths 2, 3, 6, 7, 8
        let pieces = ["Hi", ".", " Yo", "u", "!"];
        let decode = |ids: &[u32]| ids.iter().map(|&i| pieces[i as usize]).collect::<String>();
        let ids = [0, 1, 2, 3, 4];
        let lens = prefix_char_lengths(&ids, &decode);
        assert_eq!(lens, [2, 3, 6, 7, 8]);
        let segs = Granularity::Sentence.segments(&decode(&ids));
        assert_eq!(segment_end_tokens(&segs, &lens), [1, 4]);
        // a segment the decode never reaches ends at the last token
        assert_eq!(segment_end_tokens(&[(0, 50)], &lens), [4]);
        assert!(segment_end_tokens(&segs, &[]).is_empty());
    }

    #[test]
    fn overlap_of_segments_and_spans() {
        assert!(overlaps((0, 5), (4, 9)));
        assert!(!overlaps((0, 5), (5, 9)));
        assert!(overlaps((0, 5), (2, 2)), "an empty span marks its character");
        assert!(!overlaps((3, 5), (0, 3)));
    }
}
