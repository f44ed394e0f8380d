//! The `reins` command line: one binary for collecting feedback, reading preference data,
//! training reward models and aligning language models.

mod commands;

use clap::Parser;

/// reins: learning from human feedback in one binary.
#[derive(Parser)]
#[command(name = "reins", version, about, long_about = None)]
enum Cli {
    /// Run a complete RLHF experiment with simulated annotators and a gold reward.
    Quickstart(commands::quickstart::QuickstartArgs),
    /// Experiments that check the field's claims against the gold reward: list, run.
    #[command(subcommand)]
    Lab(commands::lab::LabCmd),
    /// Supervised fine-tuning (TRL SFTTrainer) from a TOML config.
    Sft(commands::train::TrainArgs),
    /// Train a Bradley–Terry reward model (TRL RewardTrainer) from a TOML config.
    Reward(commands::train::TrainArgs),
    /// Direct preference optimization, every TRL loss_type, from a TOML config.
    Dpo(commands::train::TrainArgs),
    /// Group relative policy optimization (TRL GRPOTrainer) on prompts with a named reward.
    Grpo(commands::online::OnlineArgs),
    /// REINFORCE leave-one-out or REINFORCE++ (TRL RLOOTrainer) on prompts with a named reward.
    Rloo(commands::online::OnlineArgs),
    /// Proximal policy optimization with a value head and KL-penalised rewards (TRL PPOTrainer), PF-PPO filters.
    Ppo(commands::online::OnlineArgs),
    /// ReMax: REINFORCE with the greedy response's reward as baseline.
    Remax(commands::online::OnlineArgs),
    /// Online DPO (TRL OnlineDPOTrainer): two samples per prompt, the reward picks chosen/rejected.
    OnlineDpo(commands::online::OnlineArgs),
    /// Iterative DPO (RLHF Workflow): rounds of n samples per prompt, best vs worst, DPO epochs.
    IterativeDpo(commands::online::OnlineArgs),
    /// INPO (iterative Nash policy optimization): iterative-DPO rounds with INPO's squared loss toward the Nash policy.
    Inpo(commands::online::OnlineArgs),
    /// Nash-MD (TRL NashMDTrainer): the policy against a geometric mixture of itself and the reference, judged by a reward.
    NashMd(commands::online::OnlineArgs),
    /// Online self-preferring (OSP): the policy judges its own samples; ranked pairs trained with their preference strength.
    Osp(commands::online::OnlineArgs),
    /// Kahneman–Tversky optimization on unpaired (desirable/undesirable) data (TRL KTOTrainer).
    Kto(commands::train::TrainArgs),
    /// Odds-ratio preference optimization, no reference model (TRL ORPOTrainer).
    Orpo(commands::train::TrainArgs),
    /// SimPO: length-normalized, reference-free preference optimization (TRL CPOTrainer, loss_type simpo).
    Simpo(commands::train::TrainArgs),
    /// Contrastive preference optimization, no reference model (TRL CPOTrainer).
    Cpo(commands::train::TrainArgs),
    /// LiPO-λ: listwise preference optimization on ranked lists (pairs are lists of two).
    Lipo(commands::train::TrainArgs),
    /// Reward-model statistics: head posterior (fit), intervals of reward differences, active pair selection, consistency.
    #[command(subcommand)]
    RewardStats(commands::reward_stats::RewardStatsCmd),
    /// Domain-knowledge reward model: Bradley–Terry weights over programmatic features of the response.
    RewardFeatures(commands::reward_features::FeatureArgs),
    /// Contrastive Preference Learning (Hejna et al.): regret-based contrastive loss, no reward model, no reference.
    Cpl(commands::train::TrainArgs),
    /// T-REG: DPO plus a token-level regularizer from the model's own contrastive (better vs worse prompt) token rewards.
    TReg(commands::train::TrainArgs),
    /// Segment reward model for Fine-Grained RLHF: a score per sub-sentence, sentence or response, trained on span labels (error or not).
    SegmentReward(commands::train::TrainArgs),
    /// Principle reward model (RLBFF): does a response satisfy a principle, yes or no — trained on principle checks (the feedback app's principles export, or `reins data principles` from written feedback).
    PrincipleReward(commands::train::TrainArgs),
    /// Sequence-to-sequence reward model: an LM that rewrites rejected responses into chosen ones; it scores samples token by token.
    Seq2seqReward(commands::train::TrainArgs),
    /// PIT (implicit self-improvement): `pit data` turns pairs into its SFT, gap-reward and RL data; `pit improve` improves answers round after round.
    #[command(subcommand)]
    Pit(commands::pit::PitCmd),
    /// OpenAI-compatible inference server for a model folder: /v1/models, /v1/completions, /v1/chat/completions (streaming).
    ServeModel(commands::serve_model::ServeModelArgs),
    /// Best-of-n (rejection) sampling: n samples per prompt, keep the best by a reward; JSONL for SFT.
    BestOfN(commands::best_of_n::BestOfNArgs),
    /// Sample from a Hugging Face model: stream text, or write JSONL for labelling.
    Generate(commands::generate::GenerateArgs),
    /// Inspect, convert and split preference data files.
    Data {
        #[command(subcommand)]
        cmd: commands::data::DataCmd,
    },
    /// Time training, sampling and DPO on the reference benchmark shape.
    Bench(commands::bench::BenchArgs),
    /// Check a Hugging Face checkpoint against outputs saved by transformers.
    Parity(commands::parity::ParityArgs),
    /// Run the annotation web app where people compare, rank, rate and critique outputs.
    Serve(commands::serve::ServeArgs),
    /// Manage annotation projects: users, items, invites and exports.
    #[command(subcommand)]
    Feedback(commands::serve::FeedbackCmd),
}

fn main() {
    // candle's CPU elementwise ops fan out to their own thread pool, whose workers spin for
    // ~1 ms after every op. That pool and the rayon pool behind matmul (and behind our fused
    // kernels) then compete for the same cores: on 2 loaded cores a training step took 3×
    // longer (profile: 28% of cycles in the spin loops). Elementwise work runs on the
    // caller's thread unless the user asks otherwise; matmuls stay parallel.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    // candle asks for the thread count on every matmul and, unless RAYON_NUM_THREADS is set,
    // re-reads /proc/cpuinfo each time (5% of sampling time in a profile). Ask once.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", candle_core::utils::get_num_threads().to_string());
    }
    // Before parsing: `reins --help | head -1` prints too.
    set_sigpipe(SigPipe::Default);
    let cli = Cli::parse();
    if matches!(cli, Cli::Serve(_) | Cli::Feedback(_)) {
        // A server must outlive a client that hangs up.
        set_sigpipe(SigPipe::Ignore);
    }
    // Under mpirun or torchrun: join the data-parallel world (reins_train::parallel); alone: one rank.
    let world_guard = match reins_train::parallel::init_from_env() {
        Ok(g) => g,
        Err(e) => {
            eprint!("{}", error_report(&e.into()));
            std::process::exit(1);
        }
    };
    if reins_train::parallel::world().world_size() > 1 && !data_parallel(&cli) {
        eprintln!(
            "reins: this command does not run data-parallel; under mpirun or torchrun reins runs sft, reward, dpo, orpo, simpo, cpo, lipo and grpo"
        );
        reins_train::parallel::world().abort(2);
    }
    // Servers wait on the network; their sampling thread moves each batch onto the pool itself.
    // Everything else is compute, run on a worker of rayon's pool (reins_model::threads).
    let result = if matches!(cli, Cli::Serve(_) | Cli::Feedback(_) | Cli::ServeModel(_)) {
        run(cli)
    } else {
        // Compute reuses each step's freed memory for the next (reins_model::memory).
        reins_model::memory::keep_freed_memory();
        reins_model::threads::on_pool(|| run(cli))
    };
    if let Err(e) = result {
        eprint!("{}", error_report(&e));
        let world = reins_train::parallel::world();
        if world.world_size() > 1 {
            // The other ranks may be waiting in a collective: end them all.
            world.abort(1);
        }
        world_guard.finish();
        std::process::exit(1);
    }
}

/// The command itself.
fn run(cli: Cli) -> anyhow::Result<()> {
    match cli {
        Cli::Quickstart(a) => commands::quickstart::run(a),
        Cli::Lab(c) => commands::lab::run(c),
        Cli::Sft(a) => commands::train::run(commands::train::Method::Sft, a),
        Cli::Reward(a) => commands::train::run(commands::train::Method::Reward, a),
        Cli::Dpo(a) => commands::train::run(commands::train::Method::Dpo, a),
        Cli::Grpo(a) => commands::online::run(commands::online::Method::Grpo, a),
        Cli::Rloo(a) => commands::online::run(commands::online::Method::Rloo, a),
        Cli::Ppo(a) => commands::online::run(commands::online::Method::Ppo, a),
        Cli::Remax(a) => commands::online::run(commands::online::Method::Remax, a),
        Cli::OnlineDpo(a) => commands::online::run(commands::online::Method::OnlineDpo, a),
        Cli::IterativeDpo(a) => commands::online::run(commands::online::Method::IterativeDpo, a),
        Cli::Inpo(a) => commands::online::run(commands::online::Method::Inpo, a),
        Cli::NashMd(a) => commands::online::run(commands::online::Method::NashMd, a),
        Cli::Osp(a) => commands::online::run(commands::online::Method::Osp, a),
        Cli::Kto(a) => commands::train::run(commands::train::Method::Kto, a),
        Cli::Orpo(a) => commands::train::run(commands::train::Method::Orpo, a),
        Cli::Simpo(a) => commands::train::run(commands::train::Method::Simpo, a),
        Cli::Cpo(a) => commands::train::run(commands::train::Method::Cpo, a),
        Cli::Lipo(a) => commands::train::run(commands::train::Method::Lipo, a),
        Cli::RewardStats(c) => commands::reward_stats::run(c),
        Cli::RewardFeatures(a) => commands::reward_features::run(a),
        Cli::Cpl(a) => commands::train::run(commands::train::Method::Cpl, a),
        Cli::TReg(a) => commands::train::run(commands::train::Method::TReg, a),
        Cli::SegmentReward(a) => commands::train::run(commands::train::Method::SegmentReward, a),
        Cli::PrincipleReward(a) => commands::train::run(commands::train::Method::PrincipleReward, a),
        Cli::Seq2seqReward(a) => commands::train::run(commands::train::Method::Seq2SeqReward, a),
        Cli::Pit(c) => commands::pit::run(c),
        Cli::BestOfN(a) => commands::best_of_n::run(a),
        Cli::ServeModel(a) => commands::serve_model::run(a),
        Cli::Generate(a) => commands::generate::run(a),
        Cli::Data { cmd } => commands::data::run(cmd),
        Cli::Parity(a) => commands::parity::run(a),
        Cli::Bench(a) => commands::bench::run(a),
        Cli::Serve(a) => commands::serve::run(a),
        Cli::Feedback(c) => commands::serve::run_feedback(c),
    }
}

/// Commands whose steps on several ranks are those of one process with the same global batch
/// (`reins_train::parallel`; SFT, reward, DPO and GRPO proven by `tests/data_parallel_cli.rs`, the
/// others share DPO's mean over pairs). The rest (PPO's batch whitening, KTO's batch KL, the
/// online pair methods, servers, the lab) are refused under mpirun or torchrun rather than run differently.
fn data_parallel(cli: &Cli) -> bool {
    matches!(
        cli,
        Cli::Sft(_)
            | Cli::Reward(_)
            | Cli::Dpo(_)
            | Cli::Orpo(_)
            | Cli::Simpo(_)
            | Cli::Cpo(_)
            | Cli::Lipo(_)
            | Cli::Grpo(_)
    )
}

/// `reins: <error>`, then one `  caused by: <cause>` line per error below it in the chain that
/// `anyhow`'s context and the libraries' `#[error(transparent)]` sources keep (ripgrep's `rg:`
/// style). A cause whose text already ends the line above (thiserror's `"{path}: {source}"`
/// messages embed their I/O error) is not printed twice.
fn error_report(e: &anyhow::Error) -> String {
    let mut out = format!("reins: {e}\n");
    let mut above = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !above.ends_with(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
        }
        above = text;
    }
    out
}

enum SigPipe {
    Default,
    Ignore,
}

/// `reins data inspect F | head -1` must end quietly, as `cat` and `grep` do. Rust ignores
/// SIGPIPE, so a write to a closed pipe fails with EPIPE and `println!` panics (exit 101);
/// with the default action the kernel ends the process silently instead.
fn set_sigpipe(action: SigPipe) {
    #[cfg(unix)]
    {
        let handler = match action {
            SigPipe::Default => libc::SIG_DFL,
            SigPipe::Ignore => libc::SIG_IGN,
        };
        // SAFETY: called on the main thread before any other thread starts (and again right
        // after parsing); `signal` with SIG_DFL/SIG_IGN installs no Rust code as a handler.
        unsafe {
            libc::signal(libc::SIGPIPE, handler);
        }
    }
    #[cfg(not(unix))]
    let _ = action;
}

#[cfg(test)]
mod tests {
    use super::error_report;

    #[test]
    fn an_error_prints_as_reins_then_each_cause_not_already_shown() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let model = reins_model::ModelError::Io { path: "m/config.json".into(), source: io };
        let e = anyhow::Error::new(reins_train::TrainError::from(model)).context("reward model m");
        assert_eq!(error_report(&e), "reins: reward model m\n  caused by: m/config.json: no such file\n");
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = anyhow::Error::new(io).context("reading a.toml").context("in the config");
        assert_eq!(error_report(&e), "reins: in the config\n  caused by: reading a.toml\n  caused by: denied\n");
        assert_eq!(error_report(&anyhow::anyhow!("bad")), "reins: bad\n");
    }
}
