//! HF chat templates (Jinja) rendered with minijinja the way transformers renders them:
//! `trim_blocks` and `lstrip_blocks` on, `raise_exception`, `strftime_now`, a Python-style
//! `tojson` (key order kept), Python string methods (`.strip()`, `.startswith()`, ...)
//! through `minijinja_contrib::pycompat`, Python's `is iterable`, `tools` and `documents`
//! `none` unless given, and the `{% generation %}` markers ignored. 16 real templates are
//! checked against transformers' renderings in `tests/integration/real_templates.rs`.

use crate::error::{DataError, Result};
use crate::records::Message;
use minijinja::value::{Kwargs, Value as JValue, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").field("source", &self.source).finish()
    }
}

const NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compile a template source.
    pub fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_test("iterable", is_iterable);
        let cleaned = strip_generation_tags(source);
        env.add_template_owned(NAME, cleaned).map_err(|e| DataError::Template(format!("does not compile: {e:#}")))?;
        Ok(Self { env, source: source.to_string() })
    }

    /// The template text as given.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render `messages`. `context` adds variables (special tokens such as `eos_token`,
    /// `tools`, `documents`, ...); it must be a JSON object or null. As in transformers,
    /// `tools` and `documents` are `none` unless given, and each message is the mapping
    /// [`Message::template_value`] builds (no `None`-valued keys, reasoning aliased).
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool, context: &Value) -> Result<String> {
        let mut ctx = serde_json::Map::new();
        ctx.insert("tools".into(), Value::Null);
        ctx.insert("documents".into(), Value::Null);
        if let Value::Object(extra) = context {
            ctx.extend(extra.clone());
        }
        ctx.insert("messages".into(), Value::Array(messages.iter().map(Message::template_value).collect()));
        ctx.insert("add_generation_prompt".into(), Value::Bool(add_generation_prompt));
        let tmpl = self.env.get_template(NAME).map_err(|e| DataError::Template(e.to_string()))?;
        tmpl.render(JValue::from_serialize(&ctx)).map_err(|e| DataError::Template(format!("rendering failed: {e:#}")))
    }
}

/// Jinja's `is iterable` is Python's `iter()`: `none`, numbers and booleans are not
/// iterable. minijinja iterates `none` as empty, which breaks `tools is iterable and tools |
/// length > 0` (Nemotron 3) now that `tools` is `none` when absent.
fn is_iterable(v: JValue) -> bool {
    !matches!(v.kind(), ValueKind::None | ValueKind::Bool | ValueKind::Number) && v.try_iter().is_ok()
}

fn raise_exception(msg: String) -> std::result::Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg))
}

/// Remove `{% generation %}` / `{% endgeneration %}` (transformers' assistant-mask markers).
fn strip_generation_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = &rest[start + 2..start + len];
        let inner = tag.trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace());
        out.push_str(&rest[..start]);
        if inner != "generation" && inner != "endgeneration" {
            out.push_str(&rest[start..start + len + 2]);
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

/// transformers' `tojson`: Python's `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` with those four keywords. Mappings keep their keys in
/// the order they were written (the source file's, or the template's dict literal), as
/// Python dicts do; `sort_keys=True` sorts them.
fn tojson(value: JValue, kwargs: Kwargs) -> std::result::Result<JValue, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    // Python's defaults: ", " between items ("," when indenting) and ": " after keys.
    let (item_sep, key_sep) = match separators.as_deref() {
        None => ((if indent.is_some() { "," } else { ", " }).to_string(), ": ".to_string()),
        Some([item, key]) => (item.clone(), key.clone()),
        Some(other) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: `separators` must be a pair like (',', ': '), got {} items", other.len()),
            ))
        }
    };
    let v = serde_json::to_value(&value).map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut s = String::new();
    style.write(&v, 0, &mut s);
    Ok(JValue::from_safe_string(s))
}

/// How `json.dumps` lays its output out.
struct JsonStyle {
    indent: Option<usize>,
    item_sep: String,
    key_sep: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl JsonStyle {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(n) = self.indent {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    }

    fn write(&self, v: &Value, level: usize, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => out.push_str(&n.to_string()),
            Value::String(s) => self.string(s, out),
            Value::Array(a) if a.is_empty() => out.push_str("[]"),
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(x, level + 1, out);
                }
                self.newline(level, out);
                out.push(']');
            }
            Value::Object(o) if o.is_empty() => out.push_str("{}"),
            Value::Object(o) => {
                let mut entries: Vec<(&String, &Value)> = o.iter().collect();
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(b.0));
                }
                out.push('{');
                for (i, (k, x)) in entries.into_iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.string(k, out);
                    out.push_str(&self.key_sep);
                    self.write(x, level + 1, out);
                }
                self.newline(level, out);
                out.push('}');
            }
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    // UTF-16 code units, as Python writes them (a surrogate pair above U+FFFF).
                    let mut units = [0u16; 2];
                    for u in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{:04x}", u));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

thread_local! {
    static FIXED_NOW: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with "now" fixed at `secs` (Unix time) for every template it renders on this
/// thread. Templates such as Llama 3's and GPT-OSS's write today's date into the system
/// prompt, so a dataset rendered on two days tokenizes differently; fixing the date makes a
/// rendering reproducible (the `SOURCE_DATE_EPOCH` environment variable does the same for a
/// whole process).
pub fn with_fixed_now<T>(secs: u64, f: impl FnOnce() -> T) -> T {
    let previous = FIXED_NOW.with(|c| c.replace(Some(secs)));
    let out = f();
    FIXED_NOW.with(|c| c.set(previous));
    out
}

/// "Now" for `strftime_now`: [`with_fixed_now`]'s time, else `SOURCE_DATE_EPOCH` (the
/// reproducible-builds convention: seconds since the Unix epoch), else the clock.
fn now_secs() -> u64 {
    if let Some(secs) = FIXED_NOW.with(|c| c.get()) {
        return secs;
    }
    if let Some(secs) = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse().ok()) {
        return secs;
    }
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `strftime_now(fmt)`: today's date (UTC, or the fixed "now" of [`now_secs`]) for
/// `%d %m %Y %y %b %B %A %a %H %M %S %j %%`.
fn strftime_now(fmt: String) -> String {
    strftime(&fmt, now_secs())
}

pub(crate) fn strftime(fmt: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"];
    let days = (secs / 86_400) as i64;
    let tod = secs % 86_400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let cum = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let jday = cum[(m - 1) as usize] + d + i64::from(leap && m > 2);
    let wd = DAYS[days.rem_euclid(7) as usize];
    let mname = MONTHS[(m - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('Y') => out.push_str(&y.to_string()),
            Some('y') => out.push_str(&format!("{:02}", y % 100)),
            Some('b') => out.push_str(&mname[..3]),
            Some('B') => out.push_str(mname),
            Some('A') => out.push_str(wd),
            Some('a') => out.push_str(&wd[..3]),
            Some('H') => out.push_str(&format!("{:02}", tod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", tod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", tod % 60)),
            Some('j') => out.push_str(&format!("{jday:03}")),
            Some('%') => out.push('%'),
            Some(o) => {
                out.push('%');
                out.push(o);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fixed_now_renders_that_day_and_the_clock_comes_back_after() {
        let t = ChatTemplate::new("{{ strftime_now('%d %b %Y') }}").unwrap();
        let render = || t.render(&[], false, &Value::Null).unwrap();
        // 2026-12-06 12:00 UTC.
        let noon = 20_793 * 86_400 + 43_200;
        assert_eq!(with_fixed_now(noon, render), "06 Dec 2026");
        assert_eq!(with_fixed_now(noon, || with_fixed_now(0, render)), "01 Jan 1970");
        assert!(FIXED_NOW.with(|c| c.get()).is_none(), "the fixed time is restored after");
    }

    #[test]
    fn python_style_tojson_and_methods() {
        let t = ChatTemplate::new(
            "{{ messages[0].content.strip() | tojson }}|{{ {'a': [1, 'x']} | tojson }}{% generation %}!{% endgeneration %}",
        )
        .unwrap();
        let s = t.render(&[Message::user("  hi \"there\" ")], false, &Value::Null).unwrap();
        assert_eq!(s, "\"hi \\\"there\\\"\"|{\"a\": [1, \"x\"]}!");
    }

    #[test]
    fn tojson_keeps_key_order_like_python_dicts() {
        // Keys out of alphabetical order, from data and from a dict literal.
        let t = ChatTemplate::new("{{ tools[0] | tojson }}|{{ {'b': 1, 'a': 2} | tojson }}").unwrap();
        let tools: Value =
            serde_json::from_str(r#"{"tools": [{"type": "function", "function": {"name": "f"}}]}"#).unwrap();
        let s = t.render(&[], false, &tools).unwrap();
        assert_eq!(s, r#"{"type": "function", "function": {"name": "f"}}|{"b": 1, "a": 2}"#);
    }

    #[test]
    fn tojson_keywords_follow_json_dumps() {
        let t = ChatTemplate::new(
            "{{ x | tojson(sort_keys=true) }}|{{ x | tojson(separators=(',', ':')) }}|{{ x | tojson(indent=2) }}|{{ 'é😀' | tojson(ensure_ascii=true) }}",
        )
        .unwrap();
        let ctx: Value = serde_json::from_str(r#"{"x": {"b": [1, 2], "a": null}}"#).unwrap();
        let s = t.render(&[], false, &ctx).unwrap();
        assert_eq!(
            s,
            "{\"a\": null, \"b\": [1, 2]}|{\"b\":[1,2],\"a\":null}|{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": null\n}|\"\\u00e9\\ud83d\\ude00\""
        );
        let e = ChatTemplate::new("{{ 1 | tojson(separators=(',',)) }}").unwrap().render(&[], false, &Value::Null);
        assert!(e.unwrap_err().to_string().contains("must be a pair"));
    }

    #[test]
    fn tools_and_documents_are_none_unless_given() {
        let t = ChatTemplate::new("{{ tools is none }} {{ documents is none }} {{ tools | length if tools else '' }}")
            .unwrap();
        assert_eq!(t.render(&[], false, &Value::Null).unwrap(), "True True ");
        let s = t.render(&[], false, &serde_json::json!({"tools": [{"type": "function"}]})).unwrap();
        assert_eq!(s, "False True 1");
        let t =
            ChatTemplate::new("{{ tools is iterable }} {{ 'ab' is iterable }} {{ 1 is iterable }} {{ x is iterable }}")
                .unwrap();
        assert_eq!(t.render(&[], false, &Value::Null).unwrap(), "False True False True");
    }

    #[test]
    fn raise_exception_is_an_error() {
        let t = ChatTemplate::new("{{ raise_exception('no system role') }}").unwrap();
        let e = t.render(&[], false, &Value::Null).unwrap_err();
        assert!(e.to_string().contains("no system role"), "{e}");
    }

    #[test]
    fn strftime_known_date() {
        // 2024-02-29 13:05:09 UTC
        assert_eq!(strftime("%d %b %Y %H:%M:%S %A %j", 1_709_211_909), "29 Feb 2024 13:05:09 Thursday 060");
    }
}
