//! Readers for the formats the field settled on. Each format module turns one JSON row
//! into zero or more [`Record`]s, or says why the row is skipped ([`Skip`]).
//! [`load`] runs a format over a file and fills the [`Report`].

pub mod arena;
pub mod helpsteer;
pub mod hh;
pub mod oasst;
pub mod oasst_messages;
pub mod pku_safe;
pub mod shp;
pub mod summarize;
pub mod trl;
pub mod ultrafeedback;

use crate::error::{DataError, Result};
use crate::io::{Report, Row};
use crate::records::{Record, Text};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// A source format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// TRL's own columns (`prompt`/`chosen`/`rejected`, `messages`, `completion`, `label`, ...).
    Trl,
    /// Anthropic HH-RLHF transcripts.
    Hh,
    /// OpenAssistant exports: trees (one per line) or messages (one per line, any order).
    Oasst,
    /// UltraFeedback (`instruction`, `completions[]` with `annotations`).
    UltraFeedback,
    /// Stanford Human Preferences.
    Shp,
    /// OpenAI summarize-from-feedback comparisons.
    Summarize,
    /// HelpSteer2 attribute scores (one response per row).
    HelpSteer2,
    /// HelpSteer2 preference pairs with `preference_strength`.
    HelpSteer2Preference,
    /// PKU-SafeRLHF (`better_response_id`, `safer_response_id`).
    PkuSafe,
    /// Chatbot Arena conversations (`winner` incl. ties).
    Arena,
}

impl Format {
    pub const ALL: [Format; 10] = [
        Format::Trl,
        Format::Hh,
        Format::Oasst,
        Format::UltraFeedback,
        Format::Shp,
        Format::Summarize,
        Format::HelpSteer2,
        Format::HelpSteer2Preference,
        Format::PkuSafe,
        Format::Arena,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Format::Trl => "trl",
            Format::Hh => "hh",
            Format::Oasst => "oasst",
            Format::UltraFeedback => "ultrafeedback",
            Format::Shp => "shp",
            Format::Summarize => "summarize",
            Format::HelpSteer2 => "helpsteer2",
            Format::HelpSteer2Preference => "helpsteer2-preference",
            Format::PkuSafe => "pku-safe",
            Format::Arena => "arena",
        }
    }
    pub fn known_names() -> String {
        Self::ALL.map(|f| f.name()).join(", ")
    }
    pub fn from_name(name: &str) -> Result<Format> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| DataError::UnknownFormatName(name.to_string(), Self::known_names()))
    }
}

impl std::str::FromStr for Format {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        Format::from_name(s)
    }
}

/// Which pairs to build from a ranked or scored list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PairStrategy {
    /// The best response against one other drawn at random (UltraFeedback's binarization).
    #[default]
    BestVsRandom,
    /// The best against the worst.
    BestVsWorst,
    /// The best against each of the others.
    BestVsEach,
    /// Every ordered pair with a strict preference.
    AllPairs,
}

impl std::str::FromStr for PairStrategy {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "best-vs-random" | "best_vs_random" => Ok(PairStrategy::BestVsRandom),
            "best-vs-worst" | "best_vs_worst" => Ok(PairStrategy::BestVsWorst),
            "best-vs-each" | "best_vs_each" => Ok(PairStrategy::BestVsEach),
            "all-pairs" | "all_pairs" => Ok(PairStrategy::AllPairs),
            _ => Err(DataError::Invalid(format!(
                "unknown pair strategy `{s}`; use best-vs-random, best-vs-worst, best-vs-each or all-pairs"
            ))),
        }
    }
}

/// PKU-SafeRLHF has two labels per pair; pick one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PkuTarget {
    /// `better_response_id` (helpfulness).
    #[default]
    Better,
    /// `safer_response_id` (harmlessness).
    Safer,
}

/// Options for readers and converters. Defaults follow common practice.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// How ranked/scored lists become pairs.
    pub pair_strategy: PairStrategy,
    /// Seed for `BestVsRandom` (deterministic per row).
    pub seed: u64,
    /// Keep pairs whose chosen or rejected reply is empty (HH has a few).
    pub keep_empty: bool,
    /// Keep ties (Chatbot Arena) as pairs with `strength = 0.5` instead of skipping them.
    pub keep_ties: bool,
    /// PKU-SafeRLHF label to use.
    pub pku_target: PkuTarget,
    /// UltraFeedback: rank by the mean of the aspect ratings instead of `overall_score`.
    pub ultrafeedback_mean_rating: bool,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        Self {
            pair_strategy: PairStrategy::BestVsRandom,
            seed: 42,
            keep_empty: false,
            keep_ties: false,
            pku_target: PkuTarget::Better,
            ultrafeedback_mean_rating: false,
        }
    }
}

/// Why a row gave no record.
#[derive(Clone, Debug, PartialEq)]
pub struct Skip {
    pub reason: String,
    pub detail: String,
}

impl Skip {
    pub fn new(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { reason: reason.into(), detail: detail.into() }
    }
    pub fn missing(key: &str) -> Self {
        Self::new("missing key", format!("`{key}`"))
    }
    pub fn wrong_type(key: &str, want: &str, got: &Value) -> Self {
        Self::new("wrong type", format!("`{key}` should be {want}, found {}", crate::io::json_type(got)))
    }
}

/// Where a converter puts its records and the counts of what it left out of a row.
#[derive(Debug, Default)]
pub struct Out {
    pub records: Vec<Record>,
    pub dropped: BTreeMap<String, usize>,
}

impl Out {
    pub fn push(&mut self, r: Record) {
        self.records.push(r);
    }
    pub fn drop_part(&mut self, reason: &str) {
        *self.dropped.entry(reason.to_string()).or_default() += 1;
    }
}

/// Convert one row of `format` into records.
pub fn convert_row(
    format: Format,
    row: &Map<String, Value>,
    line: usize,
    opts: &ConvertOptions,
    out: &mut Out,
) -> std::result::Result<(), Skip> {
    match format {
        Format::Trl => trl::convert(row, out),
        Format::Hh => hh::convert(row, opts, out),
        Format::Oasst => oasst::convert(row, out),
        Format::UltraFeedback => ultrafeedback::convert(row, opts, out),
        Format::Shp => shp::convert(row, out),
        Format::Summarize => summarize::convert(row, out),
        Format::HelpSteer2 => helpsteer::convert_attributes(row, line, out),
        Format::HelpSteer2Preference => helpsteer::convert_preference(row, out),
        Format::PkuSafe => pku_safe::convert(row, opts, out),
        Format::Arena => arena::convert(row, opts, out),
    }
}

/// Records loaded from one file, with the accounting.
#[derive(Debug)]
pub struct Loaded {
    pub format: Format,
    pub records: Vec<Record>,
    pub report: Report,
}

/// Read `path` (`-` is stdin), detect its format unless given, and convert every row.
pub fn load(path: &Path, format: Option<Format>, opts: &ConvertOptions) -> Result<Loaded> {
    let mut stream = crate::stream::RecordStream::open(path, format, opts)?;
    let mut records = Vec::new();
    while let Some(r) = stream.next_record()? {
        records.push(r);
    }
    Ok(Loaded { format: stream.format(), records, report: stream.finish() })
}

/// Convert already-read rows (see [`load`]); fills `report`'s conversion counts.
pub fn convert_rows(format: Format, rows: &[Row], opts: &ConvertOptions, report: &mut Report) -> Vec<Record> {
    report.format = Some(format.name().to_string());
    let mut out = Out::default();
    let (rows, trees) = if format == Format::Oasst {
        let rebuilt = oasst_messages::rebuild(rows);
        for (line, skip) in rebuilt.skipped {
            report.skip(line, skip.reason, skip.detail);
        }
        (rebuilt.rest, rebuilt.trees)
    } else {
        (rows.iter().collect(), Vec::new())
    };
    for row in rows {
        convert_row_counted(format, row, opts, &mut out, report);
    }
    for tree in trees {
        let root_line = tree.lines[0];
        match tree.row.and_then(|row| convert_one(format, &row, root_line, opts, &mut out)) {
            Ok(dropped) => {
                report.converted += tree.lines.len();
                add_dropped(report, dropped);
            }
            Err(skip) => {
                for &line in &tree.lines[1..] {
                    let detail = format!("the tree's root message (line {root_line}) was skipped: {}", skip.reason);
                    report.skip(line, "message of a skipped tree", detail);
                }
                report.skip(root_line, skip.reason, skip.detail);
            }
        }
    }
    let mut records = out.records;
    if format == Format::HelpSteer2 {
        records = helpsteer::group_by_prompt(records);
    }
    report.records = records.len();
    records
}

/// Convert one row into `out`, counting it in `report` as converted (with what it left out)
/// or skipped.
pub fn convert_row_counted(format: Format, row: &Row, opts: &ConvertOptions, out: &mut Out, report: &mut Report) {
    let Some(obj) = row.value.as_object() else {
        report.skip(row.line, "not a JSON object", "");
        return;
    };
    match convert_one(format, obj, row.line, opts, out) {
        Ok(dropped) => {
            report.converted += 1;
            add_dropped(report, dropped);
        }
        Err(skip) => report.skip(row.line, skip.reason, skip.detail),
    }
}

/// Convert one row into `out`. Returns what the row left out; a row that gives no record
/// is skipped, and its partial records and left-out counts are discarded with it, so
/// `dropped` only ever counts parts of converted rows.
fn convert_one(
    format: Format,
    obj: &Map<String, Value>,
    line: usize,
    opts: &ConvertOptions,
    out: &mut Out,
) -> std::result::Result<BTreeMap<String, usize>, Skip> {
    let before = out.records.len();
    out.dropped.clear();
    let result = convert_row(format, obj, line, opts, out).and_then(|()| {
        if out.records.len() > before {
            Ok(std::mem::take(&mut out.dropped))
        } else {
            Err(Skip::new("no usable record in row", ""))
        }
    });
    if result.is_err() {
        out.records.truncate(before);
        out.dropped.clear();
    }
    result
}

fn add_dropped(report: &mut Report, dropped: BTreeMap<String, usize>) {
    for (k, v) in dropped {
        *report.dropped.entry(k).or_default() += v;
    }
}

// ---- small JSON helpers shared by the format modules ----

pub(crate) fn get<'a>(row: &'a Map<String, Value>, key: &str) -> std::result::Result<&'a Value, Skip> {
    match row.get(key) {
        Some(Value::Null) | None => Err(Skip::missing(key)),
        Some(v) => Ok(v),
    }
}

pub(crate) fn get_str<'a>(row: &'a Map<String, Value>, key: &str) -> std::result::Result<&'a str, Skip> {
    let v = get(row, key)?;
    v.as_str().ok_or_else(|| Skip::wrong_type(key, "a string", v))
}

pub(crate) fn opt_str(row: &Map<String, Value>, key: &str) -> Option<String> {
    match row.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A number, also from strings like `"4"` (UltraFeedback ratings); `None` for `"N/A"` etc.
pub(crate) fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|x| x.is_finite()),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

/// 0 or 1 (a number, a numeric string or a boolean).
pub(crate) fn as_01(v: &Value) -> Option<usize> {
    as_f64(v).filter(|&x| x == 0.0 || x == 1.0).map(|x| x as usize)
}

pub(crate) fn get_f64(row: &Map<String, Value>, key: &str) -> std::result::Result<f64, Skip> {
    let v = get(row, key)?;
    as_f64(v).ok_or_else(|| Skip::wrong_type(key, "a number", v))
}

/// The one-user-turn prompt used when a format has a plain question.
pub(crate) fn user_prompt(s: &str) -> Text {
    Text::Chat(vec![crate::records::Message::user(s)])
}
