//! The task kinds of the synthetic world, their built-in tables, prompt templates and answer
//! sentences. The whole prompt space is enumerated (about 1,500 prompts), so a prompt text is
//! parsed back to its task by exact lookup.

use rand::seq::IndexedRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::OnceLock;

pub(crate) const CAPITALS: &[(&str, &str)] = &[
    ("France", "Paris"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Japan", "Tokyo"),
    ("China", "Beijing"),
    ("Peru", "Lima"),
    ("Chile", "Santiago"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Canada", "Ottawa"),
    ("Brazil", "Brasilia"),
    ("Russia", "Moscow"),
    ("Greece", "Athens"),
    ("Norway", "Oslo"),
    ("Sweden", "Stockholm"),
    ("Poland", "Warsaw"),
    ("Cuba", "Havana"),
    ("Ireland", "Dublin"),
    ("Portugal", "Lisbon"),
    ("Austria", "Vienna"),
    ("Turkey", "Ankara"),
];

pub(crate) const OPPOSITES: &[(&str, &str)] = &[
    ("hot", "cold"),
    ("big", "small"),
    ("fast", "slow"),
    ("up", "down"),
    ("light", "dark"),
    ("old", "young"),
    ("tall", "short"),
    ("hard", "soft"),
    ("early", "late"),
    ("open", "closed"),
    ("full", "empty"),
    ("rich", "poor"),
    ("wet", "dry"),
    ("loud", "quiet"),
    ("strong", "weak"),
    ("high", "low"),
];

pub(crate) const SOUNDS: &[(&str, &str)] = &[
    ("cow", "moo"),
    ("dog", "woof"),
    ("cat", "meow"),
    ("duck", "quack"),
    ("sheep", "baa"),
    ("pig", "oink"),
    ("horse", "neigh"),
    ("lion", "roar"),
    ("bee", "buzz"),
    ("frog", "croak"),
    ("mouse", "squeak"),
];

pub(crate) const NAMES: &[&str] =
    &["Anna", "Tom", "Maria", "Sam", "Lily", "Ben", "Emma", "Leo", "Zoe", "Max", "Nina", "Omar"];

const NUMBER_WORDS: &[&str] = &["zero", "one", "two", "three", "four", "five"];

/// A category of the "list n items" task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Colors,
    Fruits,
    Days,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Colors, Category::Fruits, Category::Days];
    /// The items, as written in a response (lower case except days).
    pub fn items(self) -> &'static [&'static str] {
        match self {
            Category::Colors => &["red", "blue", "green", "yellow", "purple", "pink", "brown", "white"],
            Category::Fruits => &["apple", "banana", "cherry", "grape", "lemon", "mango", "peach", "pear"],
            Category::Days => &["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        }
    }
    fn noun(self) -> &'static str {
        match self {
            Category::Colors => "colors",
            Category::Fruits => "fruits",
            Category::Days => "days of the week",
        }
    }
}

/// Arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Plus,
    Minus,
    Times,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Plus => "+",
            Op::Minus => "-",
            Op::Times => "times",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Op::Plus => "plus",
            Op::Minus => "minus",
            Op::Times => "times",
        }
    }
}

/// The kind of a task (for task weights and per-kind reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Arithmetic,
    Capital,
    Opposite,
    AnimalSound,
    List,
    Greeting,
}

impl TaskKind {
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Arithmetic,
        TaskKind::Capital,
        TaskKind::Opposite,
        TaskKind::AnimalSound,
        TaskKind::List,
        TaskKind::Greeting,
    ];
}

/// What a prompt asks, with everything needed to check an answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// "What is 7 + 5?"
    Arithmetic { a: i64, op: Op, b: i64 },
    /// "What is the capital of Peru?" (index into the capitals table)
    Capital { country: String },
    /// "What is the opposite of hot?"
    Opposite { word: String },
    /// "What sound does a cow make?"
    AnimalSound { animal: String },
    /// "List three colors."
    List { category: Category, n: usize },
    /// "Say hello to Anna." (`hello = false`: goodbye)
    Greeting { hello: bool, name: String },
}

impl Task {
    pub fn kind(&self) -> TaskKind {
        match self {
            Task::Arithmetic { .. } => TaskKind::Arithmetic,
            Task::Capital { .. } => TaskKind::Capital,
            Task::Opposite { .. } => TaskKind::Opposite,
            Task::AnimalSound { .. } => TaskKind::AnimalSound,
            Task::List { .. } => TaskKind::List,
            Task::Greeting { .. } => TaskKind::Greeting,
        }
    }

    /// The arithmetic result.
    pub fn value(&self) -> Option<i64> {
        match self {
            Task::Arithmetic { a, op, b } => Some(match op {
                Op::Plus => a + b,
                Op::Minus => a - b,
                Op::Times => a * b,
            }),
            _ => None,
        }
    }

    /// The single correct answer word (capital, opposite, sound), if the task has one.
    pub fn answer_word(&self) -> Option<&'static str> {
        match self {
            Task::Capital { country } => CAPITALS.iter().find(|(c, _)| c == country).map(|p| p.1),
            Task::Opposite { word } => OPPOSITES.iter().find_map(|(x, y)| {
                if x == word {
                    Some(*y)
                } else if y == word {
                    Some(*x)
                } else {
                    None
                }
            }),
            Task::AnimalSound { animal } => SOUNDS.iter().find(|(a, _)| a == animal).map(|p| p.1),
            _ => None,
        }
    }

    /// The prompt texts of this task (each template).
    fn prompt_texts(&self) -> Vec<String> {
        match self {
            Task::Arithmetic { a, op, b } => {
                vec![format!("What is {a} {} {b}?", op.symbol()), format!("What is {a} {} {b}?", op.word())]
                    .into_iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect()
            }
            Task::Capital { country } => {
                vec![format!("What is the capital of {country}?"), format!("Name the capital of {country}.")]
            }
            Task::Opposite { word } => {
                vec![format!("What is the opposite of {word}?"), format!("Give the opposite of {word}.")]
            }
            Task::AnimalSound { animal } => {
                vec![format!("What sound does a {animal} make?"), format!("What does the {animal} say?")]
            }
            Task::List { category, n } => vec![
                format!("List {} {}.", NUMBER_WORDS[*n], category.noun()),
                format!("Name {} {}.", NUMBER_WORDS[*n], category.noun()),
            ],
            Task::Greeting { hello: true, name } => {
                vec![format!("Say hello to {name}."), format!("Please greet {name}.")]
            }
            Task::Greeting { hello: false, name } => {
                vec![format!("Say goodbye to {name}."), format!("Please say goodbye to {name}.")]
            }
        }
    }

    /// A content sentence answering this task, correct or wrong.
    pub(crate) fn answer_sentence<R: Rng + ?Sized>(&self, correct: bool, rng: &mut R) -> String {
        let style = rng.random_range(0..3u8);
        match self {
            Task::Arithmetic { a, op, b } => {
                let v = self.value().unwrap_or(0);
                let shown = if correct {
                    v
                } else {
                    let deltas = [-10, -3, -2, -1, 1, 2, 3, 10];
                    let cands: Vec<i64> = deltas.iter().map(|d| v + d).filter(|x| *x >= 0).collect();
                    *cands.choose(rng).unwrap_or(&(v + 1))
                };
                match style {
                    0 => format!("{a} {} {b} is {shown}.", op.symbol()),
                    1 => format!("The answer is {shown}."),
                    _ => format!("It is {shown}."),
                }
            }
            Task::Capital { country } => {
                let right = self.answer_word().unwrap_or("Paris");
                let city = if correct { right } else { pick_other(CAPITALS.iter().map(|p| p.1), right, rng) };
                match style {
                    0 => format!("The capital of {country} is {city}."),
                    1 => format!("It is {city}."),
                    _ => format!("{city} is the capital of {country}."),
                }
            }
            Task::Opposite { word } => {
                let right = self.answer_word().unwrap_or("cold");
                let w = if correct {
                    right
                } else {
                    let all = OPPOSITES.iter().flat_map(|(x, y)| [*x, *y]).filter(|x| x != word);
                    pick_other(all, right, rng)
                };
                if style == 0 {
                    format!("It is {w}.")
                } else {
                    format!("The opposite of {word} is {w}.")
                }
            }
            Task::AnimalSound { animal } => {
                let right = self.answer_word().unwrap_or("moo");
                let s = if correct { right } else { pick_other(SOUNDS.iter().map(|p| p.1), right, rng) };
                if style == 0 {
                    format!("It says {s}.")
                } else {
                    format!("The {animal} says {s}.")
                }
            }
            Task::List { category, n } => {
                let mut items: Vec<&str> = category.items().choose_multiple(rng, *n + 1).copied().collect();
                items.truncate(*n);
                if !correct {
                    match rng.random_range(0..3u8) {
                        0 if *n > 2 => {
                            items.pop();
                        }
                        1 => {
                            let others: Vec<&str> =
                                category.items().iter().filter(|x| !items.contains(x)).copied().collect();
                            if let Some(x) = others.choose(rng) {
                                items.push(x);
                            }
                        }
                        _ => {
                            let other = *Category::ALL
                                .iter()
                                .filter(|c| *c != category)
                                .collect::<Vec<_>>()
                                .choose(rng)
                                .copied()
                                .unwrap_or(&Category::Colors);
                            let last = items.len() - 1;
                            items[last] = other.items().choose(rng).copied().unwrap_or("red");
                        }
                    }
                }
                let mut text = join_items(&items);
                if let Some(first) = text.get(..1) {
                    text = first.to_uppercase() + &text[1..];
                }
                format!("{text}.")
            }
            Task::Greeting { hello, name } => {
                let (mut h, mut nm) = (*hello, name.as_str());
                if !correct {
                    if rng.random_bool(0.5) {
                        h = !h;
                    } else {
                        nm = pick_other(NAMES.iter().copied(), name, rng);
                    }
                }
                let word = if h { "Hello" } else { "Goodbye" };
                if style == 0 {
                    format!("{word} {nm}!")
                } else {
                    format!("{word}, {nm}!")
                }
            }
        }
    }
}

fn pick_other<'a, R: Rng + ?Sized>(all: impl Iterator<Item = &'a str>, not: &str, rng: &mut R) -> &'a str {
    let cands: Vec<&str> = all.filter(|x| *x != not).collect();
    cands.choose(rng).copied().unwrap_or("none")
}

fn join_items(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [x] => x.to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Every task of the world, in a fixed order.
pub fn all_tasks() -> Vec<Task> {
    let mut out = Vec::new();
    for a in 1..=20 {
        for b in 1..=20 {
            out.push(Task::Arithmetic { a, op: Op::Plus, b });
        }
    }
    for a in 3..=20 {
        for b in 1..a {
            out.push(Task::Arithmetic { a, op: Op::Minus, b });
        }
    }
    for a in 2..=9 {
        for b in 2..=9 {
            out.push(Task::Arithmetic { a, op: Op::Times, b });
        }
    }
    out.extend(CAPITALS.iter().map(|(c, _)| Task::Capital { country: c.to_string() }));
    out.extend(OPPOSITES.iter().flat_map(|(x, y)| [x, y]).map(|w| Task::Opposite { word: w.to_string() }));
    out.extend(SOUNDS.iter().map(|(a, _)| Task::AnimalSound { animal: a.to_string() }));
    for category in Category::ALL {
        for n in 2..=5 {
            out.push(Task::List { category, n });
        }
    }
    for hello in [true, false] {
        out.extend(NAMES.iter().map(|n| Task::Greeting { hello, name: n.to_string() }));
    }
    out
}

/// Every (prompt text, task) of the world, in a fixed order.
pub fn all_prompts() -> &'static [(String, Task)] {
    static ALL: OnceLock<Vec<(String, Task)>> = OnceLock::new();
    ALL.get_or_init(|| {
        all_tasks().into_iter().flat_map(|t| t.prompt_texts().into_iter().map(move |p| (p, t.clone()))).collect()
    })
}

/// The task a prompt text asks (exact match after trimming; a chat-formatted prompt,
/// `<|user|> … <|assistant|>`, is accepted too), or `None` for a text that is not one of the
/// world's prompts.
pub fn parse_prompt(text: &str) -> Option<&'static Task> {
    static MAP: OnceLock<HashMap<&'static str, &'static Task>> = OnceLock::new();
    let map = MAP.get_or_init(|| all_prompts().iter().map(|(p, t)| (p.as_str(), t)).collect());
    let text = text.replace(crate::chat::USER, " ").replace(crate::chat::ASSISTANT, " ");
    let norm = text.split_whitespace().collect::<Vec<_>>().join(" ");
    map.get(norm.as_str()).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_prompt_parses_back_to_its_task_and_texts_are_unique() {
        let all = all_prompts();
        assert!(all.len() > 1000, "{}", all.len());
        let mut seen = std::collections::HashSet::new();
        for (p, t) in all {
            assert!(seen.insert(p.clone()), "duplicate prompt {p}");
            assert_eq!(parse_prompt(p), Some(t));
            let words = p.split_whitespace().count();
            assert!((3..=15).contains(&words), "{p}");
        }
        assert_eq!(parse_prompt("  What is 2 + 3? "), Some(&Task::Arithmetic { a: 2, op: Op::Plus, b: 3 }));
        assert_eq!(parse_prompt("Tell me a story."), None);
        let chat = crate::chat::prompt("What is 2 + 3?");
        assert_eq!(parse_prompt(&chat), parse_prompt("What is 2 + 3?"));
    }
}
