//! The lab's chat format, defined once.
//!
//! A training text is `"<|user|> {prompt} <|assistant|> {response}<|end|>"`. The prompt part
//! ([`prompt`]) ends right after `<|assistant|>`; the completion ([`completion`]) starts with the
//! space, so `prompt(p) + completion(r) == full(p, r)` and generation starts where the
//! completion would.

/// End of a pretraining document.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Padding.
pub const PAD: &str = "<|pad|>";
/// Opens the user's turn.
pub const USER: &str = "<|user|>";
/// Opens the assistant's turn.
pub const ASSISTANT: &str = "<|assistant|>";
/// Ends the assistant's turn; the generation stop token (`eos_token`).
pub const END: &str = "<|end|>";
/// All special tokens, in the id order the tokenizer gives them (0..=4).
pub const SPECIAL_TOKENS: [&str; 5] = [ENDOFTEXT, PAD, USER, ASSISTANT, END];

/// The chat template in Jinja (for `tokenizer_config.json`), equal to [`full`] / [`prompt`].
pub const JINJA_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'user' %}<|user|> {{ message['content'] }} {% elif message['role'] == 'assistant' %}<|assistant|> {{ message['content'] }}<|end|>{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/// The text a policy is conditioned on: `"<|user|> {prompt} <|assistant|>"`.
pub fn prompt(prompt: &str) -> String {
    format!("{USER} {prompt} {ASSISTANT}")
}

/// The text a policy should produce: `" {response}<|end|>"`.
pub fn completion(response: &str) -> String {
    format!(" {response}{END}")
}

/// A whole training text.
pub fn full(prompt_text: &str, response: &str) -> String {
    format!("{}{}", prompt(prompt_text), completion(response))
}

/// The response inside a generated completion: text up to the first `<|end|>` (or
/// `<|endoftext|>`), trimmed. The flag says whether the end token was produced (a completion
/// cut by `max_new_tokens` is not finished; the gold reward scores what is there).
pub fn extract_response(generated: &str) -> (String, bool) {
    let cut = [END, ENDOFTEXT].iter().filter_map(|t| generated.find(t)).min();
    match cut {
        Some(i) => (generated[..i].trim().to_string(), true),
        None => (generated.trim().to_string(), false),
    }
}

/// Words (whitespace-separated) of a generated answer, cut as [`extract_response`] cuts it —
/// the count the gold reward's length budget reads.
pub fn answer_words(generated: &str) -> usize {
    extract_response(generated).0.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_plus_completion_is_full() {
        let p = "What is 2 + 3?";
        let r = "2 + 3 is 5.";
        assert_eq!(prompt(p) + &completion(r), full(p, r));
        assert_eq!(full(p, r), "<|user|> What is 2 + 3? <|assistant|> 2 + 3 is 5.<|end|>");
        assert_eq!(extract_response(&completion(r)), (r.to_string(), true));
        assert_eq!(extract_response(" 2 + 3 is"), ("2 + 3 is".to_string(), false));
    }

    #[test]
    fn jinja_template_renders_exactly_the_chat_format() {
        let mut env = minijinja::Environment::new();
        env.add_template("chat", JINJA_TEMPLATE).unwrap();
        let t = env.get_template("chat").unwrap();
        let (p, r) = ("Say hello to Anna.", "Hello, Anna!");
        let msgs = |with_answer: bool| {
            let mut m = vec![minijinja::context! { role => "user", content => p }];
            if with_answer {
                m.push(minijinja::context! { role => "assistant", content => r });
            }
            m
        };
        let full_text =
            t.render(minijinja::context! { messages => msgs(true), add_generation_prompt => false }).unwrap();
        assert_eq!(full_text, full(p, r));
        let gen = t.render(minijinja::context! { messages => msgs(false), add_generation_prompt => true }).unwrap();
        assert_eq!(gen, prompt(p));
    }
}
