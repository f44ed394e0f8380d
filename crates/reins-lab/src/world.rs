//! The synthetic world: prompts of several task kinds and responses whose quality varies along
//! hidden factors (relevance, correctness, politeness, brevity, repetition).
//!
//! Deterministic from `(seed, WorldConfig)`: the train / dev / test split, the prompt streams and
//! the corpus are the same on every platform.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::chat;
use crate::config::{QualityMix, WorldConfig};
use crate::rng::{derive_seed, fnv1a, stream, LabRng};
pub use crate::tasks::{all_prompts, parse_prompt, Category, Op, Task, TaskKind};
use crate::LabError;

/// Polite openers and closers (each is one sentence).
pub(crate) const POLITE_OPENERS: &[&str] = &["Sure!", "Of course!", "Happy to help!", "Glad you asked."];
pub(crate) const POLITE_CLOSERS: &[&str] = &["Hope this helps!", "Have a nice day!", "Thank you for asking!"];
/// Rude remarks.
pub(crate) const RUDE: &[&str] =
    &["Ugh, fine.", "What a silly question.", "Stop bothering me.", "Figure it out yourself.", "Whatever."];
/// Filler sentences (padding).
pub(crate) const FILLER: &[&str] = &[
    "Let me think about this.",
    "That is a common question.",
    "Many people ask about this.",
    "Well, here is what I know.",
    "Basically, it is simple.",
    "Let me explain in detail.",
];

/// Train prompts feed the corpus, SFT, pairs and RL; held-out prompts only evaluation. The
/// held-out prompts are halved: `Dev` is what tuning and sanity checks may read, `Test` is what
/// the reported numbers are measured on and no tuning choice reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    Dev,
    Test,
}

/// A prompt of the world.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Prompt {
    /// The user's text, e.g. "What is the capital of Peru?".
    pub text: String,
    /// What it asks.
    pub task: Task,
}

impl Prompt {
    /// The prompt as the policy sees it (`chat::prompt`).
    pub fn chat(&self) -> String {
        chat::prompt(&self.text)
    }
}

/// Politeness of a generated response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Politeness {
    /// A rude remark at the start or the end.
    Rude,
    Neutral,
    /// A polite opener, a closer, or both (`polite_sentences` says how many).
    Polite,
}

/// The hidden quality factors a generated response was written with: the truth the gold
/// reward's parser must recover from the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Factors {
    /// Answers the asked question (else answers a question of another kind).
    pub relevant: bool,
    /// States the right answer (always false when not relevant).
    pub correct: bool,
    pub politeness: Politeness,
    /// Polite sentences (0, 1 or 2: opener and/or closer).
    pub polite_sentences: u8,
    /// Filler sentences (0..=2).
    pub padding: u8,
    /// Extra copies of the answer sentence (0..=2).
    pub repeats: u8,
}

impl Factors {
    /// Every factor good, with a polite opener.
    pub fn good() -> Self {
        Factors {
            relevant: true,
            correct: true,
            politeness: Politeness::Polite,
            polite_sentences: 1,
            padding: 0,
            repeats: 0,
        }
    }
    /// Draws factors from a quality mix.
    pub fn sample<R: Rng + ?Sized>(mix: &QualityMix, rng: &mut R) -> Self {
        let relevant = rng.random_bool(mix.p_relevant);
        let correct = relevant && rng.random_bool(mix.p_correct);
        let (politeness, polite_sentences) = if rng.random_bool(mix.p_polite) {
            (Politeness::Polite, rng.random_range(1..=2u8))
        } else if rng.random_bool(mix.p_rude) {
            (Politeness::Rude, 0)
        } else {
            (Politeness::Neutral, 0)
        };
        let padding = if rng.random_bool(mix.p_padded) { rng.random_range(1..=2u8) } else { 0 };
        let repeats = if rng.random_bool(mix.p_repeated) { rng.random_range(1..=2u8) } else { 0 };
        Factors { relevant, correct, politeness, polite_sentences, padding, repeats }
    }
}

/// A response the world wrote, with the factors it was written with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub text: String,
    pub factors: Factors,
}

/// A supervised example: prompt text and response text (not chat-formatted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftExample {
    pub prompt: String,
    pub response: String,
}

impl SftExample {
    /// TRL's prompt/completion shape, chat-formatted (`chat::prompt`, `chat::completion`).
    pub fn chat_prompt_completion(&self) -> (String, String) {
        (chat::prompt(&self.prompt), chat::completion(&self.response))
    }
}

/// Texts to train the tokenizer and pretrain on, and SFT examples. Built from train-split
/// prompts only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Corpus {
    /// Chat-formatted full texts (`chat::full`), responses drawn with `world.corpus_mix`.
    pub pretrain: Vec<String>,
    /// Prompt/response pairs, responses drawn with `world.sft_mix`.
    pub sft: Vec<SftExample>,
}

/// The world: the prompt space split into train, dev and test, and the response writer.
#[derive(Debug, Clone)]
pub struct World {
    seed: u64,
    cfg: WorldConfig,
    /// Per task kind (in `TaskKind::ALL` order): its train, dev and test prompts.
    train: Vec<Vec<Prompt>>,
    dev: Vec<Vec<Prompt>>,
    test: Vec<Vec<Prompt>>,
}

impl World {
    /// Builds the world. The split depends on the seed: a prompt is held out when its hash,
    /// mixed with the seed, falls under `heldout_fraction`, and a held-out prompt is a test
    /// prompt when a second hash of it falls under one half (dev otherwise); every kind gets at
    /// least one prompt in each split.
    pub fn new(seed: u64, cfg: &WorldConfig) -> Result<Self, LabError> {
        let lab = crate::config::LabConfig { world: cfg.clone(), ..Default::default() };
        lab.validate()?;
        let split_seed = derive_seed(seed, "world/split");
        let unit = |h: u64, name: &str| (crate::rng::derive_seed(h, name) >> 11) as f64 / (1u64 << 53) as f64;
        let n = TaskKind::ALL.len();
        let (mut train, mut dev, mut test) = (vec![Vec::new(); n], vec![Vec::new(); n], vec![Vec::new(); n]);
        for (text, task) in all_prompts() {
            let k = kind_index(task.kind());
            let h = fnv1a(text.as_bytes()) ^ split_seed;
            let p = Prompt { text: text.clone(), task: task.clone() };
            if unit(h, "split") >= cfg.heldout_fraction {
                train[k].push(p);
            } else if unit(h, "split/test") < 0.5 {
                test[k].push(p);
            } else {
                dev[k].push(p);
            }
        }
        for k in 0..n {
            for held in [&mut dev[k], &mut test[k]] {
                if held.is_empty() {
                    if let Some(p) = train[k].pop() {
                        held.push(p);
                    }
                }
            }
            if train[k].is_empty() {
                let donor = if dev[k].len() > 1 { &mut dev[k] } else { &mut test[k] };
                if let Some(p) = donor.pop() {
                    train[k].push(p);
                }
            }
        }
        Ok(World { seed, cfg: cfg.clone(), train, dev, test })
    }

    /// The seed the world was built with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Every prompt of a split, kind by kind.
    pub fn all(&self, split: Split) -> impl Iterator<Item = &Prompt> {
        self.by_split(split).iter().flatten()
    }

    fn by_split(&self, split: Split) -> &[Vec<Prompt>] {
        match split {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// `n` prompts of a split, the same on every call: kinds drawn by `task_weights`, prompts
    /// within a kind without replacement until the kind is exhausted.
    pub fn prompts(&self, split: Split, n: usize) -> Vec<Prompt> {
        let name = match split {
            Split::Train => "prompts/train",
            Split::Dev => "prompts/heldout",
            Split::Test => "prompts/test",
        };
        self.prompts_with(split, n, &mut stream(self.seed, name))
    }

    /// Like [`World::prompts`], from the caller's stream (e.g. a fresh batch per PPO step).
    pub fn prompts_with<R: Rng + ?Sized>(&self, split: Split, n: usize, rng: &mut R) -> Vec<Prompt> {
        let pools = self.by_split(split);
        let w = &self.cfg.task_weights;
        let weights = [w.arithmetic, w.capital, w.opposite, w.animal_sound, w.list, w.greeting];
        let total: f64 = weights.iter().sum();
        let mut decks: Vec<Vec<usize>> = vec![Vec::new(); pools.len()];
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut u = rng.random::<f64>() * total;
            let mut k = weights.len() - 1;
            for (i, wi) in weights.iter().enumerate() {
                if u < *wi {
                    k = i;
                    break;
                }
                u -= wi;
            }
            if decks[k].is_empty() {
                decks[k] = (0..pools[k].len()).collect();
                decks[k].shuffle(rng);
            }
            if let Some(i) = decks[k].pop() {
                out.push(pools[k][i].clone());
            }
        }
        out
    }

    /// A response to `prompt` with factors drawn from `mix`.
    pub fn sample_response<R: Rng + ?Sized>(&self, prompt: &Prompt, rng: &mut R, mix: &QualityMix) -> Response {
        let factors = Factors::sample(mix, rng);
        self.response_with(prompt, &factors, rng)
    }

    /// A response to `prompt` written with exactly these factors.
    pub fn response_with<R: Rng + ?Sized>(&self, prompt: &Prompt, factors: &Factors, rng: &mut R) -> Response {
        let content = if factors.relevant {
            prompt.task.answer_sentence(factors.correct, rng)
        } else {
            // An answer to a question of another kind: shares no subject words with this one.
            let others: Vec<usize> =
                (0..TaskKind::ALL.len()).filter(|k| TaskKind::ALL[*k] != prompt.task.kind()).collect();
            let k = *others.choose(rng).unwrap_or(&0);
            let pool = &self.train[k];
            let other = &pool[rng.random_range(0..pool.len())];
            other.task.answer_sentence(rng.random_bool(0.5), rng)
        };
        let mut parts: Vec<&str> = Vec::new();
        let (mut opener, mut closer) = (false, false);
        match (factors.politeness, factors.polite_sentences) {
            (Politeness::Polite, 2) => (opener, closer) = (true, true),
            (Politeness::Polite, _) => {
                if rng.random_bool(0.5) {
                    opener = true
                } else {
                    closer = true
                }
            }
            _ => {}
        }
        let rude_first = factors.politeness == Politeness::Rude && rng.random_bool(0.5);
        if opener {
            parts.push(POLITE_OPENERS.choose(rng).copied().unwrap_or("Sure!"));
        }
        if rude_first {
            parts.push(RUDE.choose(rng).copied().unwrap_or("Whatever."));
        }
        let fillers: Vec<&str> = FILLER.choose_multiple(rng, factors.padding as usize).copied().collect();
        parts.extend(fillers);
        for _ in 0..=factors.repeats {
            parts.push(&content);
        }
        if factors.politeness == Politeness::Rude && !rude_first {
            parts.push(RUDE.choose(rng).copied().unwrap_or("Whatever."));
        }
        if closer {
            parts.push(POLITE_CLOSERS.choose(rng).copied().unwrap_or("Hope this helps!"));
        }
        Response { text: parts.join(" "), factors: factors.clone() }
    }

    /// The corpus: `n_pretrain` chat texts (responses from `corpus_mix`) and `n_sft` SFT
    /// examples (responses from `sft_mix`), all on train-split prompts. Deterministic.
    pub fn corpus(&self, n_pretrain: usize, n_sft: usize) -> Corpus {
        let mut rng = stream(self.seed, "corpus/pretrain");
        let pretrain = self
            .prompts_with(Split::Train, n_pretrain, &mut rng)
            .iter()
            .map(|p| chat::full(&p.text, &self.sample_response(p, &mut rng, &self.cfg.corpus_mix).text))
            .collect();
        let mut rng = stream(self.seed, "corpus/sft");
        let sft = self
            .prompts_with(Split::Train, n_sft, &mut rng)
            .iter()
            .map(|p| SftExample {
                prompt: p.text.clone(),
                response: self.sample_response(p, &mut rng, &self.cfg.sft_mix).text,
            })
            .collect();
        Corpus { pretrain, sft }
    }

    /// `n` model-free comparison pairs `(prompt, a, b)`: two world responses drawn from `mix`
    /// per prompt of `split`. Deterministic. For CI and sanity checks (the experiment's pairs
    /// are the SFT policy's samples).
    pub fn sample_pairs(&self, split: Split, n: usize, mix: &QualityMix) -> Vec<(String, String, String)> {
        let name = match split {
            Split::Train => "pairs/train",
            Split::Dev => "pairs/heldout",
            Split::Test => "pairs/test",
        };
        let mut rng = stream(self.seed, name);
        self.prompts_with(split, n, &mut rng)
            .into_iter()
            .map(|p| {
                let a = self.sample_response(&p, &mut rng, mix).text;
                let b = self.sample_response(&p, &mut rng, mix).text;
                (p.text, a, b)
            })
            .collect()
    }

    /// A short fingerprint of everything the world generates (split, prompts, corpus): put it
    /// in the cache key of the tokenizer and base model, so a changed world retrains them.
    pub fn fingerprint(&self) -> String {
        let c = self.corpus(256, 256);
        let mut bytes = Vec::new();
        for p in self.all(Split::Dev).chain(self.all(Split::Test)) {
            bytes.extend_from_slice(p.text.as_bytes());
        }
        for t in c.pretrain.iter().chain(c.sft.iter().map(|e| &e.response)) {
            bytes.extend_from_slice(t.as_bytes());
        }
        bytes.extend_from_slice(format!("{:?}", self.cfg).as_bytes());
        format!("{:016x}", fnv1a(&bytes))
    }

    /// A fresh stream for a named stage of this world (e.g. `"pairs"`).
    pub fn rng(&self, name: &str) -> LabRng {
        stream(self.seed, name)
    }
}

fn kind_index(k: TaskKind) -> usize {
    TaskKind::ALL.iter().position(|x| *x == k).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn world() -> World {
        World::new(1, &WorldConfig::default()).unwrap()
    }

    #[test]
    fn splits_are_disjoint_cover_everything_and_depend_on_seed() {
        let w = world();
        let train: HashSet<_> = w.all(Split::Train).map(|p| p.text.clone()).collect();
        let dev: HashSet<_> = w.all(Split::Dev).map(|p| p.text.clone()).collect();
        let test: HashSet<_> = w.all(Split::Test).map(|p| p.text.clone()).collect();
        assert!(train.is_disjoint(&dev) && train.is_disjoint(&test) && dev.is_disjoint(&test));
        assert_eq!(train.len() + dev.len() + test.len(), all_prompts().len());
        let frac = (dev.len() + test.len()) as f64 / all_prompts().len() as f64;
        assert!((0.15..0.25).contains(&frac), "{frac}");
        let half = test.len() as f64 / (dev.len() + test.len()) as f64;
        assert!((0.4..0.6).contains(&half), "{half}");
        for k in 0..TaskKind::ALL.len() {
            assert!(!w.train[k].is_empty() && !w.dev[k].is_empty() && !w.test[k].is_empty());
        }
        let other = World::new(2, &WorldConfig::default()).unwrap();
        let test2: HashSet<_> = other.all(Split::Test).map(|p| p.text.clone()).collect();
        assert_ne!(test, test2);
    }

    #[test]
    fn prompts_are_deterministic_varied_and_from_the_split() {
        let w = world();
        let a = w.prompts(Split::Dev, 200);
        assert_eq!(a, w.prompts(Split::Dev, 200));
        assert_eq!(a, World::new(1, &WorldConfig::default()).unwrap().prompts(Split::Dev, 200));
        let kinds: HashSet<_> = a.iter().map(|p| p.task.kind()).collect();
        assert_eq!(kinds.len(), 6);
        let held: HashSet<_> = w.all(Split::Dev).collect();
        assert!(a.iter().all(|p| held.contains(p)));
    }

    #[test]
    fn responses_are_short_and_follow_their_factors() {
        let w = world();
        let mut rng = w.rng("test");
        for p in w.prompts(Split::Train, 300) {
            let r = w.sample_response(&p, &mut rng, &QualityMix::default());
            let words = r.text.split_whitespace().count();
            assert!((1..=32).contains(&words), "{}", r.text);
            assert!(r.text.ends_with(['.', '!', '?']), "{}", r.text);
            let good = w.response_with(&p, &Factors::good(), &mut rng);
            assert!(good.text.split_whitespace().count() <= 16, "{}", good.text);
        }
    }

    #[test]
    fn fingerprint_tracks_seed_and_config() {
        let w = world();
        assert_eq!(w.fingerprint(), world().fingerprint());
        assert_ne!(w.fingerprint(), World::new(2, &WorldConfig::default()).unwrap().fingerprint());
        let mut cfg = WorldConfig::default();
        cfg.sft_mix.p_rude = 0.5;
        assert_ne!(w.fingerprint(), World::new(1, &cfg).unwrap().fingerprint());
        let reduced = crate::LabConfig::reduced();
        assert!(crate::Lab::new(&reduced).is_ok());
    }

    #[test]
    fn corpus_is_deterministic_and_from_train_prompts_only() {
        let w = world();
        let c = w.corpus(300, 100);
        assert_eq!(c, w.corpus(300, 100));
        assert_eq!(c.pretrain.len(), 300);
        assert_eq!(c.sft.len(), 100);
        let held: HashSet<_> = w.all(Split::Dev).chain(w.all(Split::Test)).map(|p| chat::prompt(&p.text)).collect();
        for t in &c.pretrain {
            assert!(t.starts_with(chat::USER) && t.ends_with(chat::END), "{t}");
            let prompt_part = &t[..t.find(chat::ASSISTANT).unwrap() + chat::ASSISTANT.len()];
            assert!(!held.contains(prompt_part), "{t}");
        }
        let distinct: HashSet<_> = c.sft.iter().map(|e| e.response.clone()).collect();
        assert!(distinct.len() > 60);
    }
}
