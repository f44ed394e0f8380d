//! The review side of an item's preview (`/p/{id}/items/{item}`): each label's verdict and
//! effective answer, the item's flags with their notes, and the reviewer's adjudicated
//! answer. The rules are `crate::review`'s (label states, latest adjudication), so the
//! preview shows what the exports and the stats use.
use crate::app::AppState;
use crate::db::{Item, Submission};
use crate::error::Result;
use crate::review::{self, Verdict};
use crate::tasks::ProjectConfig;
use minijinja::{context, Value};
use std::collections::HashMap;

pub struct ItemReview {
    /// One per submission, in the order given.
    pub labels: Vec<Value>,
    /// The flags on the item's assignments, oldest first.
    pub flags: Vec<Value>,
    pub adjudication: Option<Value>,
}

/// An answer in item order, in words: "A" is the item's first response.
fn in_words(cfg: &ProjectConfig, item: &Item, answer: &serde_json::Value) -> String {
    let identity: Vec<usize> = (0..item.responses.len()).collect();
    review::describe(cfg, &review::to_display(cfg, answer, &identity))
}

pub async fn item_review(
    state: &AppState,
    cfg: &ProjectConfig,
    item: &Item,
    subs: &[Submission],
    names: &HashMap<String, String>,
) -> Result<ItemReview> {
    let name = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let states = review::states(subs, &state.db.revisions(&item.project_id).await?);
    let labels = subs
        .iter()
        .map(|s| {
            let Some(st) = states.get(&s.id) else { return Value::UNDEFINED };
            let by = st.reviewer.as_deref().map(name).unwrap_or_default();
            let mut text = match st.verdict {
                Verdict::Pending => "not reviewed".to_string(),
                Verdict::Accepted => format!("accepted by {by}"),
                Verdict::Corrected => format!("corrected by {by}"),
                Verdict::Rejected => {
                    format!("rejected by {by}: {}", st.reason.as_deref().unwrap_or("no reason given"))
                }
            };
            if st.edited {
                text.push_str(" · edited by the annotator");
            }
            // A rejected label is not a label: it has no effective answer.
            let effective =
                (s.kind == "label" && st.verdict != Verdict::Rejected).then(|| in_words(cfg, item, &st.answer));
            context! { verdict => st.verdict, text => text, edited => st.edited, effective => effective }
        })
        .collect();
    let flags = state
        .db
        .item_flags(&item.id)
        .await?
        .iter()
        .map(|f| context! { by => name(&f.user_id), note => f.note })
        .collect();
    let all = state.db.adjudications(&item.project_id).await?;
    let adjudication = review::latest_adjudications(&all).get(item.id.as_str()).map(|a| {
        context! { by => name(&a.user_id), answer => in_words(cfg, item, &a.answer), stored => a.answer.to_string() }
    });
    Ok(ItemReview { labels, flags, adjudication })
}
