//! Data parallelism over an existing collective library: several processes (ranks) train one
//! model, each on its share of every batch, and average their gradients with an all-reduce
//! before each optimizer step, so every rank takes the same step and keeps the same weights.
//!
//! Two ways in, chosen by [`init_from_env`] from the launcher's variables:
//! - MPI (`mpirun -np 2 reins dpo --config F.toml`, Open MPI or MPICH) with a reins built with
//!   the `mpi` feature (`mpi_world`);
//! - NCCL on GPUs (`torchrun --nproc-per-node 8 --no-python reins dpo --config F.toml`, or any
//!   launcher that sets `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`) with a reins built
//!   with the `nccl` feature (the binary's `cuda`): the ranks meet over TCP ([`rendezvous`]),
//!   then all-reduce through NCCL (`nccl_world`), rank `LOCAL_RANK` of a machine on its GPU
//!   `LOCAL_RANK`.
//!
//! Without a launcher there is one rank and nothing here costs anything.
//!
//! What a rank does differently ([`crate::run::train`] and the trainers):
//! - data: micro-batch `m` of the run is `per_device_train_batch_size × world_size` examples of
//!   the seeded order, rank `r` taking the `r`-th slice; a short last batch is filled from the
//!   start of the epoch's order (Accelerate's `even_batches`), so ranks always hold equal
//!   shares and a mean over ranks is the mean over the global batch;
//! - gradients: averaged over ranks in [`crate::optim::optimizer::Optimizer`]; losses normalised
//!   by a token count (SFT's `num_items_in_batch`, GRPO's DAPO) use the count summed over ranks;
//! - sampling: a rank samples its rows on the random streams the rows have in the global
//!   batch ([`row_offset`]), so the completions are those one process would sample;
//! - logging and checkpoints: metrics are averaged over ranks (`num_tokens` summed, `*_min`/
//!   `min_*` and `*_max`/`max_*` keys reduced by min and max); rank 0 alone writes the run
//!   folder, and the others wait for each checkpoint to be complete.
//!
//! With the same global batch (`per_device_train_batch_size × world_size`), a run on `N`
//! ranks takes the steps of a one-process run, and resumes from any checkpoint at any world size.

use std::sync::OnceLock;

use crate::{Result, TrainError};

#[cfg(feature = "mpi")]
mod mpi_world;
#[cfg(feature = "nccl")]
mod nccl_world;
pub mod rendezvous;

/// How an all-reduce combines the ranks' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Sum,
    Min,
    Max,
}

/// The collective operations data parallelism needs; every rank calls each in the same order.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Replaces `buf` on every rank by its element-wise sum over ranks.
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Replaces `buf` on every rank by its element-wise `op` over ranks.
    fn all_reduce_f64(&self, buf: &mut [f64], op: Op) -> Result<()>;
    /// Returns when every rank has called it.
    fn barrier(&self) -> Result<()>;
    /// Ends this process, and every rank's where the library can (MPI; under NCCL torchrun
    /// ends the others): an error on one rank would leave the others waiting.
    fn abort(&self, code: i32) -> !;
}

/// One process: every collective is the identity.
pub struct Single;

impl Collective for Single {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn all_reduce_f64(&self, _: &mut [f64], _: Op) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}

static WORLD: OnceLock<Box<dyn Collective>> = OnceLock::new();

/// The ranks this process trains with: the world [`init_from_env`] joined, or [`Single`].
pub fn world() -> &'static dyn Collective {
    WORLD.get().map(|w| w.as_ref()).unwrap_or(&Single)
}

/// The first random stream of this rank's sampled rows, when each rank samples `rows_per_rank`
/// rows of a batch that one process would sample whole ([`reins_model::generate::generate_streams`]).
pub fn row_offset(rows_per_rank: usize) -> u64 {
    (world().rank() * rows_per_rank) as u64
}

/// Keeps the collective library initialised; dropping it shuts the library down (MPI's
/// `MPI_Finalize`). Hold it in `main` for the life of the process.
pub struct Guard {
    #[cfg(feature = "mpi")]
    _universe: Option<mpi::environment::Universe>,
}

impl Guard {
    /// Shuts the collective library down now (before `std::process::exit`, which skips drops).
    pub fn finish(self) {}
}

/// Joins the world the process was launched into: MPI when an MPI launcher's variables are
/// set (`OMPI_COMM_WORLD_SIZE`, `PMI_SIZE`), NCCL when torchrun's are (`WORLD_SIZE`, `RANK`,
/// `MASTER_ADDR`, `MASTER_PORT`: [`rendezvous::Launch`]; a build without NCCL runs a world of
/// one as one process), one process otherwise. A launch this build cannot join, or one whose
/// variables disagree, is an error that says how to fix it.
pub fn init_from_env() -> Result<Guard> {
    let mpi_size = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"]
        .iter()
        .find_map(|k| std::env::var(k).ok())
        .and_then(|v| v.parse::<usize>().ok());
    match mpi_size {
        Some(_) => join_mpi(),
        None => {
            if let Some(launch) = rendezvous::Launch::from_env()? {
                join_nccl(&launch)?;
            }
            Ok(Guard {
                #[cfg(feature = "mpi")]
                _universe: None,
            })
        }
    }
}

#[cfg(not(feature = "nccl"))]
fn join_nccl(launch: &rendezvous::Launch) -> Result<()> {
    if launch.world_size == 1 {
        // `torchrun --nproc-per-node 1`: one process, as without a launcher.
        return Ok(());
    }
    Err(TrainError::Config(format!(
        "WORLD_SIZE={} is set (a torchrun-style launch), which joins the other ranks through NCCL, but this reins \
         was built without it; hint: build the GPU binary with scripts/build-cuda.sh (`--features cuda`), \
         or launch with `mpirun -np N reins ...` from a build with `--features mpi`",
        launch.world_size
    )))
}

#[cfg(feature = "nccl")]
fn join_nccl(launch: &rendezvous::Launch) -> Result<()> {
    let world = nccl_world::NcclWorld::join(launch)?;
    WORLD.set(Box::new(world)).map_err(|_| TrainError::State("the data-parallel world was joined twice".into()))
}

#[cfg(not(feature = "mpi"))]
fn join_mpi() -> Result<Guard> {
    Err(TrainError::Config(
        "launched by an MPI launcher (mpirun), but this reins was built without MPI; \
         build it with `cargo build --release --features mpi` (needs Open MPI's libopenmpi-dev and libclang-dev)"
            .into(),
    ))
}

#[cfg(feature = "mpi")]
fn join_mpi() -> Result<Guard> {
    let (universe, _) = mpi::initialize_with_threading(mpi::Threading::Serialized)
        .ok_or_else(|| TrainError::State("MPI was already initialised in this process".into()))?;
    let world = mpi_world::MpiWorld::new(universe.world());
    WORLD.set(Box::new(world)).map_err(|_| TrainError::State("the data-parallel world was joined twice".into()))?;
    Ok(Guard { _universe: Some(universe) })
}

/// Element-wise mean over ranks of `buf`.
pub fn mean_over_ranks(buf: &mut [f32]) -> Result<()> {
    let w = world();
    if w.world_size() == 1 {
        return Ok(());
    }
    w.all_reduce_f32(buf)?;
    let n = w.world_size() as f32;
    buf.iter_mut().for_each(|x| *x /= n);
    Ok(())
}

/// `x` summed over ranks.
pub fn sum_over_ranks(x: f64) -> Result<f64> {
    let mut b = [x];
    world().all_reduce_f64(&mut b, Op::Sum)?;
    Ok(b[0])
}

/// Every rank's `local` values, rank after rank (all ranks give the same length).
pub fn gather_f32(local: &[f32]) -> Result<Vec<f32>> {
    let w = world();
    if w.world_size() == 1 {
        return Ok(local.to_vec());
    }
    let n = local.len();
    let mut all = vec![0f32; n * w.world_size()];
    all[w.rank() * n..(w.rank() + 1) * n].copy_from_slice(local);
    w.all_reduce_f32(&mut all)?;
    Ok(all)
}

/// How a metric combines over ranks: `*_min`/`min_*` by min, `*_max`/`max_*` by max,
/// `num_tokens` (each rank's count) by sum, everything else by the mean.
fn metric_op(key: &str) -> (Op, bool) {
    let last = key.rsplit('/').next().unwrap_or(key);
    if last.starts_with("min_") || last.ends_with("_min") {
        (Op::Min, false)
    } else if last.starts_with("max_") || last.ends_with("_max") {
        (Op::Max, false)
    } else if key == "num_tokens" {
        (Op::Sum, false)
    } else {
        (Op::Sum, true)
    }
}

/// One step's metrics combined over ranks ([`metric_op`]); every rank gets the result. Ranks
/// that logged different keys are an error (a trainer bug), not a silent mix-up.
pub fn reduce_metrics(m: &crate::trainers::Metrics) -> Result<crate::trainers::Metrics> {
    let w = world();
    if w.world_size() == 1 {
        return Ok(m.clone());
    }
    // The keys' count and a checksum of their names must agree on every rank.
    let sig: u64 = m
        .keys()
        .flat_map(|k| k.bytes().chain([0]))
        .fold(1469598103934665603u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
    let mut check = [m.len() as f64, (sig >> 32) as f64, (sig & 0xffff_ffff) as f64];
    let mut lo = check;
    w.all_reduce_f64(&mut check, Op::Max)?;
    w.all_reduce_f64(&mut lo, Op::Min)?;
    if check != lo {
        return Err(TrainError::State(
            "the ranks logged different metric keys in one step; data-parallel training cannot average them".into(),
        ));
    }
    let mut out = m.clone();
    for op in [Op::Sum, Op::Min, Op::Max] {
        let keys: Vec<&String> = m.keys().filter(|k| metric_op(k).0 == op).collect();
        let mut vals: Vec<f64> = keys.iter().map(|k| m[*k]).collect();
        w.all_reduce_f64(&mut vals, op)?;
        for (k, v) in keys.into_iter().zip(vals) {
            let mean = metric_op(k).1;
            out.insert(k.clone(), if mean { v / w.world_size() as f64 } else { v });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_combine_by_their_names() {
        assert_eq!(metric_op("loss"), (Op::Sum, true));
        assert_eq!(metric_op("num_tokens"), (Op::Sum, false));
        assert_eq!(metric_op("min_reward"), (Op::Min, false));
        assert_eq!(metric_op("clip_ratio/low_min"), (Op::Min, false));
        assert_eq!(metric_op("completions/max_length"), (Op::Max, false));
        assert_eq!(metric_op("clip_ratio/high_max"), (Op::Max, false));
        // One process: the helpers are the identity.
        let mut b = [1.0f32, 2.0];
        mean_over_ranks(&mut b).unwrap();
        assert_eq!(b, [1.0, 2.0]);
        assert_eq!(gather_f32(&[3.0]).unwrap(), vec![3.0]);
        assert_eq!(row_offset(8), 0);
    }

    #[cfg(not(feature = "nccl"))]
    #[test]
    fn a_build_without_nccl_refuses_a_torchrun_launch_and_says_how_to_build_one() {
        let launch = |world_size| rendezvous::Launch {
            rank: 0,
            world_size,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            port: 29500,
        };
        let e = join_nccl(&launch(2)).unwrap_err().to_string();
        assert!(e.contains("WORLD_SIZE=2") && e.contains("scripts/build-cuda.sh") && e.contains("mpirun"), "{e}");
        // `torchrun --nproc-per-node 1`: one process.
        assert!(join_nccl(&launch(1)).is_ok());
    }
}
