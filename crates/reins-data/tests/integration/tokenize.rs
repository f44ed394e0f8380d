//! TRL's preprocessing rules beyond the fixture batches: truncation, dropping, EOS,
//! conversational SFT, packing, left padding.

use reins_data::collate::{collate_packed, collate_preference, collate_prompts};
use reins_data::testing::fixtures_dir;
use reins_data::tokenize::pack::{pack_dataset, PackingStrategy};
use reins_data::tokenize::preference::{tokenize_preference, tokenize_preference_dataset, PreferenceOptions};
use reins_data::tokenize::reward::{tokenize_reward_dataset, RewardOptions};
use reins_data::tokenize::sft::{tokenize_sft, tokenize_sft_dataset, SftOptions, IGNORE_INDEX};
use reins_data::tokenize::{common_prefix_length, TruncationMode};
use reins_data::{HfTokenizer, Message, Meta, Preference, Record, Text};

fn tok() -> HfTokenizer {
    HfTokenizer::from_dir(fixtures_dir().join("tokenizer")).unwrap()
}

fn plain_pair(prompt: &str, chosen: &str, rejected: &str) -> Record {
    Record::Preference(Preference {
        prompt: Text::Plain(prompt.into()),
        chosen: Text::Plain(chosen.into()),
        rejected: Text::Plain(rejected.into()),
        margin: Some(1.0),
        strength: None,
        reference: None,
        meta: Meta::default(),
    })
}

#[test]
fn dpo_drops_prompts_that_fill_max_length_only_with_keep_start() {
    let t = tok();
    let recs = vec![plain_pair("Hello there, how are you?", " Fine.", " Bad."), plain_pair("Hi", " Yo.", " No.")];
    let Record::Preference(p0) = &recs[0] else { unreachable!() };
    let n = tokenize_preference(&t, p0).unwrap().prompt_ids.len();
    let opts = PreferenceOptions { max_length: Some(n), truncation_mode: TruncationMode::KeepStart };
    let (ids, stats) = tokenize_preference_dataset(&t, &recs, &opts).unwrap();
    assert_eq!((ids.len(), stats.dropped.get("prompt alone fills max_length")), (1, Some(&1)));
    let opts = PreferenceOptions { max_length: Some(n), truncation_mode: TruncationMode::KeepEnd };
    let (ids, stats) = tokenize_preference_dataset(&t, &recs, &opts).unwrap();
    assert_eq!((ids.len(), stats.dropped_total()), (2, 0));
    let b = collate_preference(&ids, 3, Some(n), TruncationMode::KeepEnd, Some(8));
    assert!(b.input_ids.iter().all(|r| r.len() % 8 == 0));
    assert!(b.completion_mask[0].contains(&1), "keep_end keeps the completion");
    assert_eq!(b.margin, Some(vec![1.0, 1.0]));
    // Other kinds are counted, not silently ignored.
    let (_, stats) = tokenize_preference_dataset(
        &t,
        &[Record::PromptOnly { prompt: Text::Plain("x".into()), meta: Meta::default() }],
        &PreferenceOptions::default(),
    )
    .unwrap();
    assert_eq!(stats.dropped.get("prompt_only is not a preference"), Some(&1));
}

#[test]
fn eos_is_not_doubled_and_completion_follows_common_prefix() {
    let t = tok();
    let Record::Preference(a) = plain_pair("Q:", " yes<|endoftext|>", " no") else { unreachable!() };
    let ids = tokenize_preference(&t, &a).unwrap();
    let eos = t.eos_id().unwrap();
    assert_eq!(ids.chosen_ids.iter().filter(|&&x| x == eos).count(), 1);
    assert_eq!(ids.rejected_ids.last(), Some(&eos));
    // Tokens can merge across the prompt/completion boundary: the completion then starts
    // where the two tokenizations diverge.
    let Record::Preference(b) = plain_pair("Hello wor", "ld", "m") else { unreachable!() };
    let ids = tokenize_preference(&t, &b).unwrap();
    let full = t.encode("Hello world<|endoftext|>", true).unwrap();
    let p = t.encode("Hello wor", true).unwrap();
    assert_eq!(ids.prompt_ids, p[..common_prefix_length(&p, &full)].to_vec());
    assert_eq!([ids.prompt_ids.clone(), ids.chosen_ids.clone()].concat(), full);
}

#[test]
fn sft_conversational_language_modeling_and_truncation() {
    let t = tok();
    let pc = Record::PromptCompletion {
        prompt: Text::Chat(vec![Message::user("Hi")]),
        completion: Text::Chat(vec![Message::assistant("Hello")]),
        meta: Meta::default(),
    };
    let ids = tokenize_sft(&t, &pc, None).unwrap().unwrap();
    let prompt_len = t.encode_chat(&[Message::user("Hi")], true).unwrap().len();
    assert!(ids.labels[..prompt_len].iter().all(|&l| l == IGNORE_INDEX));
    assert!(ids.labels[prompt_len..].iter().all(|&l| l != IGNORE_INDEX));
    assert_eq!(t.decode(&ids.input_ids[prompt_len..], false).unwrap(), "Hello<|im_end|>\n");
    let all = tokenize_sft(&t, &pc, Some(false)).unwrap().unwrap();
    assert!(all.labels.iter().all(|&l| l != IGNORE_INDEX));

    let lm = Record::LanguageModeling { text: Text::Plain("The sky".into()), meta: Meta::default() };
    let ids = tokenize_sft(&t, &lm, None).unwrap().unwrap();
    assert_eq!(ids.input_ids.last(), t.eos_id().as_ref(), "EOS appended to text");
    assert_eq!(ids.labels, ids.input_ids.iter().map(|&x| x as i64).collect::<Vec<_>>());

    // keep_start truncation that leaves only prompt drops the example, counted.
    let opts = SftOptions { max_length: Some(prompt_len), ..SftOptions::default() };
    let (kept, stats) = tokenize_sft_dataset(&t, &[pc.clone(), lm.clone()], &opts, false).unwrap();
    assert_eq!((kept.len(), stats.dropped.get("fully masked after truncation")), (1, Some(&1)));
    assert!(kept[0].input_ids.len() <= prompt_len);

    // Packing: everything kept, each row at most max_length, positions restart per sequence.
    let (ex, _) = tokenize_sft_dataset(&t, &[pc.clone(), lm, pc], &SftOptions::default(), true).unwrap();
    let total: usize = ex.iter().map(|e| e.input_ids.len()).sum();
    let packed = pack_dataset(&ex, 32, PackingStrategy::BfdSplit);
    assert_eq!(packed.iter().map(|p| p.input_ids.len()).sum::<usize>(), total);
    assert!(packed.iter().all(|p| p.input_ids.len() <= 32));
    let b = collate_packed(&packed, 3, None);
    let pos = &b.position_ids.as_ref().unwrap()[0];
    assert_eq!(pos.iter().filter(|&&p| p == 0).count(), packed.iter().map(|p| p.seq_lengths.len()).sum::<usize>());
}

#[test]
fn reward_filters_long_pairs_and_generation_pads_left() {
    let t = tok();
    let recs = vec![plain_pair("Q", " a", " b"), plain_pair("A much longer question here", " a", " b")];
    let (ids, stats) = tokenize_reward_dataset(&t, &recs, &RewardOptions { max_length: Some(6) }).unwrap();
    assert_eq!((ids.len(), stats.dropped.get("longer than max_length")), (1, Some(&1)));

    let prompts = vec![t.encode("Hi", true).unwrap(), t.encode("Hello there friend", true).unwrap()];
    let g = collate_prompts(&prompts, t.pad_id().unwrap());
    assert_eq!(g.input_ids[0].last(), prompts[0].last());
    assert_eq!(g.input_ids[0][0], 3);
    assert_eq!(g.attention_mask[0].iter().filter(|&&m| m == 1).count(), prompts[0].len());
}

#[test]
fn kto_unpairs_tokenizes_and_rotates_kl_completions() {
    use reins_data::collate::collate_unpaired;
    use reins_data::convert::unpair;
    use reins_data::tokenize::unpaired::{kl_completion_ids, tokenize_unpaired_dataset};
    let t = tok();
    let recs = unpair(vec![plain_pair("Q1", " a", " b"), plain_pair("Q2", " c", " d")]);
    let labels: Vec<bool> = recs
        .iter()
        .map(|r| match r {
            Record::Unpaired { label, .. } => *label,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(labels, [true, true, false, false], "chosen first, then rejected");
    let (ids, stats) = tokenize_unpaired_dataset(&t, &recs, Some(1024)).unwrap();
    assert_eq!(stats.kept, 4);
    assert_eq!(ids[0].completion_ids, t.encode(" a<|endoftext|>", true).unwrap());
    let kl = kl_completion_ids(&ids, 2);
    assert_eq!(kl[0], ids[1].completion_ids);
    assert_eq!(kl[1], ids[0].completion_ids);
    let b = collate_unpaired(&ids, Some(&kl), 3, Some(1024), None);
    assert_eq!(b.label, labels);
    assert_eq!(b.kl_input_ids.as_ref().map(Vec::len), Some(4));
    let row0: Vec<u32> = [ids[0].prompt_ids.clone(), ids[0].completion_ids.clone()].concat();
    assert_eq!(&b.input_ids[0][..row0.len()], &row0[..]);
}
