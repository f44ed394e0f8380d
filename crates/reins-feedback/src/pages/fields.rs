//! The label page's input fields, derived from the project's questions. Each field takes
//! the keyboard when focused (Tab / j / k move between fields); its options carry the key
//! that picks them. Adding a task type means adding fields here and a case in `app.js`.
use crate::tasks::{ProjectConfig, QuestionKind};
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Opt {
    pub key: String,
    pub value: String,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct Field {
    /// Question name.
    pub q: String,
    pub kind: &'static str,
    /// Sub-part: `choice`/`strength` (pairwise), aspect name (likert), principle index.
    pub sub: String,
    /// Display position of the response this field is about, if any.
    pub pos: Option<usize>,
    pub label: String,
    pub options: Vec<Opt>,
    pub optional: bool,
    /// The question's help, on its first field only (read out with it as its description).
    pub help: Option<String>,
    /// A model's suggested answer, pre-filled by the page (JSON; see `suggestions`).
    pub suggested: Option<String>,
}

pub fn letter(pos: usize) -> String {
    char::from(b'A' + (pos % 26) as u8).to_string()
}

fn opt(key: impl ToString, value: impl ToString, text: impl ToString) -> Opt {
    Opt { key: key.to_string(), value: value.to_string(), text: text.to_string() }
}

pub fn fields(cfg: &ProjectConfig, n: usize) -> Vec<Field> {
    let mut out = Vec::new();
    for q in &cfg.questions {
        let first = out.len();
        let f = |sub: String, pos: Option<usize>, label: String, options: Vec<Opt>| Field {
            q: q.name.clone(),
            kind: q.kind_name(),
            sub,
            pos,
            label,
            options,
            optional: false,
            help: None,
            suggested: None,
        };
        match &q.kind {
            QuestionKind::Pairwise { allow_tie, allow_both_bad, strength } => {
                let mut o = vec![opt(1, "a", "A is better"), opt(2, "b", "B is better")];
                if *allow_tie {
                    o.push(opt(3, "tie", "Tie"));
                }
                if *allow_both_bad {
                    o.push(opt(4, "both_bad", "Both bad"));
                }
                out.push(f("choice".into(), None, q.label().into(), o));
                if *strength {
                    let mut s = f(
                        "strength".into(),
                        None,
                        format!("{}: how much better?", q.label()),
                        vec![opt(1, 1, "slightly"), opt(2, 2, "clearly"), opt(3, 3, "much")],
                    );
                    s.optional = true;
                    out.push(s);
                }
            }
            QuestionKind::Ranking => {
                let mut o: Vec<Opt> = (0..n).map(|p| opt(p + 1, p, letter(p))).collect();
                o.push(opt(0, "reset", "start over"));
                out.push(f(String::new(), None, format!("{} (press responses best first)", q.label()), o));
            }
            QuestionKind::Likert { aspects, min, max, scale_labels } => {
                let text = |v: i64| match scale_labels.get((v - min) as usize) {
                    Some(l) if !l.is_empty() => format!("{v} {l}"),
                    _ => v.to_string(),
                };
                for pos in 0..n {
                    for aspect in aspects {
                        let o = (*min..=*max)
                            .map(|v| opt(if *max - *min < 10 { (v - min + 1) % 10 } else { v }, v, text(v)))
                            .collect();
                        out.push(f(aspect.clone(), Some(pos), format!("{} {aspect}", letter(pos)), o));
                    }
                }
            }
            QuestionKind::Thumbs => {
                for pos in 0..n {
                    out.push(f(
                        String::new(),
                        Some(pos),
                        format!("{}: {}", letter(pos), q.label()),
                        vec![opt(1, "true", "👍 good"), opt(2, "false", "👎 bad")],
                    ));
                }
            }
            QuestionKind::Spans { tags } => {
                for pos in 0..n {
                    let mut o: Vec<Opt> = tags.iter().enumerate().map(|(i, t)| opt(i + 1, t, t)).collect();
                    o.push(opt(0, "clear", "clear spans"));
                    let mut s = f(
                        String::new(),
                        Some(pos),
                        format!("{}: select text in {}, then press a tag", q.label(), letter(pos)),
                        o,
                    );
                    s.optional = true;
                    out.push(s);
                }
            }
            QuestionKind::Critique { rewrite } => {
                for pos in 0..n {
                    let what = if *rewrite { "rewrite" } else { "critique" };
                    let mut s = f(
                        what.into(),
                        Some(pos),
                        format!("{}: {} of {} (Ctrl+Enter submits)", q.label(), what, letter(pos)),
                        vec![],
                    );
                    s.optional = true;
                    out.push(s);
                }
            }
            QuestionKind::Principles { principles } => {
                for pos in 0..n {
                    for (i, p) in principles.iter().enumerate() {
                        out.push(f(
                            i.to_string(),
                            Some(pos),
                            format!("{}: {p}", letter(pos)),
                            vec![opt(1, "true", "yes"), opt(2, "false", "no")],
                        ));
                    }
                }
            }
        }
        if let Some(f) = out.get_mut(first) {
            f.help.clone_from(&q.help);
        }
    }
    out
}
