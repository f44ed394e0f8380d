//! The scheduler behind `reins serve-model`: one thread owns the model and merges concurrent
//! requests into one call of the KV-cache sampler.
//!
//! Grouping rule: a batch starts with the oldest waiting request. Until `batch_wait` has passed
//! since then, every waiting request with the same sampling settings (`do_sample`,
//! `temperature`, `top_k`, `top_p`, `min_p`, `stop_on_eos`) joins it in arrival order, while
//! the batch stays within `max_batch_rows` rows (one request larger than that runs alone).
//! Requests that arrive while a batch runs wait for the next one, so under load batches form
//! with no wait at all. `max_tokens` may differ: the call runs for the largest, and the per-row
//! stop hook ends each row at its own request's limit (reported as `length`), as it ends rows
//! at their request's stop strings. A request that cannot join (other settings, no room) keeps
//! its place in the queue. Pushing a LoRA adapter is a barrier: it is applied between batches,
//! and requests queued after it are sampled from the new weights.
//!
//! Determinism: row `i` of a request with seed `s` draws from random stream `(s, i)` whatever
//! batch it lands in ([`generate_streams`]), so a request gets the tokens it gets alone.

use std::collections::VecDeque;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reins_data::HfTokenizer;
use reins_model::generate::{generate_streams, Finish, Hooks};
use reins_model::threads::on_pool;
use reins_model::{Arch, Model, SamplingConfig};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

/// One request's rows, as the scheduler samples them.
pub struct Job {
    /// The prompts, each repeated `n` times; row `i` draws from stream `(sampling.seed, i)`.
    pub rows: Vec<Vec<u32>>,
    /// Settings; `max_new_tokens` is this request's own limit.
    pub sampling: SamplingConfig,
    /// Stop strings: a row ends once its text contains one.
    pub stop: Vec<String>,
    /// Send each new token as it is sampled.
    pub stream: bool,
    /// Where the request's updates go.
    pub reply: UnboundedSender<Update>,
}

/// What a request hears back, in this order: `Started`, `Token`s (streaming only), `Done`.
pub enum Update {
    /// The request's batch has started: rows and requests in it, all requests together.
    Started { rows: usize, requests: usize },
    /// Row `row` of the request sampled token `id`.
    Token { row: usize, id: u32 },
    /// Per row, the new token ids, their log-probs under the sampling distribution and why the
    /// row ended; or why generation failed.
    Done(Result<Vec<Row>, String>),
}

/// One sampled row: new token ids, each one's log-prob, and why it ended.
pub type Row = (Vec<u32>, Vec<f32>, Finish);

enum Msg {
    Generate(Job),
    /// Sample from this model from now on; answer once it is in place.
    Swap(Box<Model>, oneshot::Sender<()>),
}

/// The batching limits (`--max-batch-rows`, `--batch-wait-ms`).
#[derive(Clone, Copy)]
pub struct Limits {
    pub max_batch_rows: usize,
    pub batch_wait: Duration,
}

/// A handle to the scheduler thread; the thread ends when the last handle is dropped.
pub struct Scheduler {
    tx: mpsc::Sender<Msg>,
}

impl Scheduler {
    pub fn start(model: Model, tok: Arc<HfTokenizer>, limits: Limits) -> Self {
        let (tx, rx) = mpsc::channel();
        let worker = Worker { model, tok, limits, rx, queue: VecDeque::new() };
        std::thread::spawn(move || worker.run());
        Scheduler { tx }
    }

    /// Queues a request; its updates come through `job.reply`.
    pub fn submit(&self, job: Job) -> Result<(), String> {
        self.tx.send(Msg::Generate(job)).map_err(|_| "the sampling thread has stopped".to_string())
    }

    /// Queues a model swap; the receiver fires once requests queued later will see `model`.
    pub fn swap(&self, model: Model) -> Result<oneshot::Receiver<()>, String> {
        let (done, rx) = oneshot::channel();
        self.tx.send(Msg::Swap(Box::new(model), done)).map_err(|_| "the sampling thread has stopped".to_string())?;
        Ok(rx)
    }
}

/// Where the first of `stop` starts in the text of `ids`, if any.
pub fn stop_at(tok: &HfTokenizer, stop: &[String], ids: &[u32]) -> Option<usize> {
    if stop.is_empty() {
        return None;
    }
    let text = tok.decode(ids, true).unwrap_or_default();
    stop.iter().filter_map(|s| text.find(s.as_str())).min()
}

/// Whether rows of `a` and `b` can be sampled in one call: everything but the seed and
/// `max_new_tokens` (ended per row by the stop hook) must agree.
fn compatible(a: &SamplingConfig, b: &SamplingConfig) -> bool {
    a.do_sample == b.do_sample
        && a.temperature == b.temperature
        && a.top_k == b.top_k
        && a.top_p == b.top_p
        && a.min_p == b.min_p
        && a.stop_on_eos == b.stop_on_eos
}

struct Worker {
    model: Model,
    tok: Arc<HfTokenizer>,
    limits: Limits,
    rx: mpsc::Receiver<Msg>,
    /// Messages received and not yet served, in arrival order.
    queue: VecDeque<Msg>,
}

impl Worker {
    fn run(mut self) {
        loop {
            while let Ok(m) = self.rx.try_recv() {
                self.queue.push_back(m);
            }
            if self.queue.is_empty() {
                match self.rx.recv() {
                    Ok(m) => self.queue.push_back(m),
                    Err(_) => return,
                }
            }
            match self.queue.pop_front() {
                Some(Msg::Swap(model, done)) => {
                    self.model = *model;
                    let _ = done.send(());
                }
                Some(Msg::Generate(first)) => {
                    let batch = self.gather(first);
                    self.sample(batch);
                }
                None => {}
            }
        }
    }

    /// The batch that starts with `first`, by the grouping rule of the module doc.
    fn gather(&mut self, first: Job) -> Vec<Job> {
        let deadline = Instant::now() + self.limits.batch_wait;
        let mut batch = vec![first];
        let mut rows = batch[0].rows.len();
        // Queue entries before `seen` were looked at and cannot join.
        let mut seen = 0;
        loop {
            while seen < self.queue.len() {
                match &self.queue[seen] {
                    // A barrier: what comes after it waits for the new weights.
                    Msg::Swap(..) => return batch,
                    Msg::Generate(j) if rows + j.rows.len() <= self.limits.max_batch_rows && self.joins(&batch, j) => {
                        if let Some(Msg::Generate(j)) = self.queue.remove(seen) {
                            rows += j.rows.len();
                            batch.push(j);
                        }
                    }
                    Msg::Generate(_) => seen += 1,
                }
            }
            if rows >= self.limits.max_batch_rows {
                return batch;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return batch };
            match self.rx.recv_timeout(left) {
                Ok(m) => self.queue.push_back(m),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return batch,
            }
        }
    }

    /// Whether `job` may join `batch`: the same settings, and (GPT-2 only) the padded batch
    /// still fits the learned positions, so merging never turns a valid request into an error.
    fn joins(&self, batch: &[Job], job: &Job) -> bool {
        if !compatible(&batch[0].sampling, &job.sampling) {
            return false;
        }
        let c = &self.model.config;
        if matches!(c.arch, Arch::Gpt2) {
            let all = || batch.iter().chain(std::iter::once(job));
            let prompt = all().flat_map(|j| j.rows.iter().map(Vec::len)).max().unwrap_or(0);
            let new = all().map(|j| j.sampling.max_new_tokens).max().unwrap_or(0);
            return prompt + new <= c.max_position_embeddings;
        }
        true
    }

    /// Samples `batch` in one call and sends each request its rows.
    fn sample(&self, batch: Vec<Job>) {
        // Row r of the call is row owner[r].1 of request owner[r].0.
        let owner: Vec<(usize, usize)> =
            batch.iter().enumerate().flat_map(|(j, job)| (0..job.rows.len()).map(move |i| (j, i))).collect();
        let rows: Vec<Vec<u32>> = batch.iter().flat_map(|j| j.rows.iter().cloned()).collect();
        let streams: Vec<(u64, u64)> = owner.iter().map(|&(j, i)| (batch[j].sampling.seed, i as u64)).collect();
        for job in &batch {
            let _ = job.reply.send(Update::Started { rows: rows.len(), requests: batch.len() });
        }
        let max_new_tokens = batch.iter().map(|j| j.sampling.max_new_tokens).max().unwrap_or(0);
        let cfg = SamplingConfig { max_new_tokens, ..batch[0].sampling.clone() };
        let (model, tok) = (&self.model, &*self.tok);
        // On a worker of rayon's pool: each op of a decode step runs there without waking
        // this thread (reins_model::threads).
        let result = on_pool(|| {
            let stop_fn = |r: usize, ids: &[u32]| {
                let job = &batch[owner[r].0];
                ids.len() >= job.sampling.max_new_tokens || stop_at(tok, &job.stop, ids).is_some()
            };
            let mut on_token = |r: usize, id: u32| {
                let (j, row) = owner[r];
                if batch[j].stream {
                    let _ = batch[j].reply.send(Update::Token { row, id });
                }
            };
            let hooks = Hooks { stop: Some(&stop_fn), on_token: Some(&mut on_token) };
            generate_streams(model, &rows, &cfg, &streams, hooks)
        });
        match result {
            Ok(g) => {
                let mut out: Vec<Vec<Row>> = batch.iter().map(|j| Vec::with_capacity(j.rows.len())).collect();
                for (((ids, logprobs), finish), &(j, _)) in
                    g.tokens.into_iter().zip(g.logprobs).zip(g.finish).zip(&owner)
                {
                    // The hook also ends rows at their own max_tokens: that is a length finish.
                    let finish = match finish {
                        Finish::Stop if stop_at(tok, &batch[j].stop, &ids).is_none() => Finish::Length,
                        f => f,
                    };
                    out[j].push((ids, logprobs, finish));
                }
                for (job, rows) in batch.iter().zip(out) {
                    let _ = job.reply.send(Update::Done(Ok(rows)));
                }
            }
            Err(e) => {
                for job in &batch {
                    let _ = job.reply.send(Update::Done(Err(e.to_string())));
                }
            }
        }
    }
}
