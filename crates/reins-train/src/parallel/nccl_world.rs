//! The NCCL world (`--features nccl`, on in the `cuda` binary): one rank per GPU, launched by
//! torchrun or any launcher that sets its variables ([`Launch`]). Rank 0 creates NCCL's unique
//! id and hands it to the others over TCP ([`rendezvous`]); every rank then creates its
//! communicator on GPU `LOCAL_RANK`. Joined by [`super::init_from_env`].
//!
//! cudarc opens `libnccl` at run time (`dynamic-loading`, vendor/README.md), so the binary
//! builds without NCCL and starts without it; joining checks that it can be opened first and
//! says how to provide it, instead of cudarc's panic.

use std::ffi::c_char;
use std::sync::{Arc, Mutex};

use candle_core::cuda_backend::cudarc;
use cudarc::driver::{CudaContext, CudaStream, DeviceRepr, DriverError};
use cudarc::nccl::result::NcclError;
use cudarc::nccl::safe::{Comm, Id, NcclType, ReduceOp};

use super::rendezvous::{self, Launch};
use super::{Collective, Op};
use crate::{Result, TrainError};

/// The length of NCCL's `ncclUniqueId`.
const ID_LEN: usize = 128;

/// This rank's NCCL communicator over every rank, one call at a time.
pub struct NcclWorld {
    comm: Mutex<Comm>,
    stream: Arc<CudaStream>,
    rank: usize,
    size: usize,
}

// SAFETY: the communicator and the stream are handles NCCL and the CUDA driver own. Every
// call on them goes through the mutex, so one thread at a time uses the communicator (NCCL's
// rule), and cudarc binds the stream's context to the calling thread before each CUDA call.
unsafe impl Send for NcclWorld {}
unsafe impl Sync for NcclWorld {}

fn fail(rank: usize, message: String) -> TrainError {
    TrainError::Parallel { message: format!("rank {rank}: {message}"), source: None }
}

fn driver(rank: usize, what: &str) -> impl Fn(DriverError) -> TrainError + '_ {
    move |e| fail(rank, format!("{what}: CUDA error {e}"))
}

fn nccl(rank: usize, call: &'static str) -> impl Fn(NcclError) -> TrainError {
    move |e| fail(rank, format!("{call} failed: {:?}; hint: rerun with NCCL_DEBUG=WARN for NCCL's own account", e.0))
}

impl NcclWorld {
    /// Opens GPU `LOCAL_RANK`, meets the other ranks at `MASTER_ADDR` and creates this rank's
    /// communicator. Blocks until every rank has joined (or [`rendezvous::TIMEOUT`] passes).
    pub fn join(launch: &Launch) -> Result<NcclWorld> {
        let rank = launch.rank;
        // NCCL first: it loads without the driver, so its check can be tried on any machine.
        // SAFETY: each dlopens the library under cudarc's candidate names (running its
        // initialisers, as any use would) and closes it again; neither calls into it.
        if !unsafe { cudarc::nccl::sys::is_culib_present() } {
            return Err(fail(
                rank,
                "NCCL not found: reins opens it as libnccl.so, a name NCCL's runtime packages (libnccl2, PyPI's \
                 nvidia-nccl-cu13) do not install; hint: `scripts/build-cuda.sh --runtime-libs` installs NCCL with \
                 that link and prints the LD_LIBRARY_PATH to use, or link libnccl.so to libnccl.so.2 in a folder on \
                 LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(fail(
                rank,
                "a torchrun-style launch trains on GPUs through NCCL, and libcuda.so.1 (the NVIDIA driver) was not \
                 found; hint: run on a GPU machine, or unset WORLD_SIZE to train one process on the CPU"
                    .into(),
            ));
        }
        // Rank 0 takes its port first: a port in use fails before any GPU work.
        let listener = if rank == 0 { Some(rendezvous::listen(launch.port)?) } else { None };
        let gpu = launch.local_rank;
        let ctx = CudaContext::new(gpu).map_err(|e| {
            fail(
                rank,
                format!(
                    "cannot open GPU {gpu} (LOCAL_RANK={gpu}): CUDA error {e}; hint: start at most as many ranks \
                     on a machine as it has GPUs (torchrun --nproc-per-node), LOCAL_RANK numbering them from 0"
                ),
            )
        })?;
        let stream = ctx.new_stream().map_err(driver(rank, "creating a CUDA stream"))?;
        let id = match &listener {
            Some(listener) => {
                let id = Id::new().map_err(nccl(rank, "ncclGetUniqueId"))?;
                let bytes: Vec<u8> = id.internal().iter().map(|&c| c as u8).collect();
                rendezvous::serve(listener, &bytes, launch.world_size, rendezvous::TIMEOUT)?;
                id
            }
            None => {
                let address = launch.address();
                let bytes = rendezvous::fetch(&address, rank, launch.world_size, rendezvous::TIMEOUT)?;
                let internal: [c_char; ID_LEN] = bytes
                    .iter()
                    .map(|&b| b as c_char)
                    .collect::<Vec<_>>()
                    .try_into()
                    .map_err(|_| {
                        fail(
                            rank,
                            format!(
                                "rank 0 at {address} sent a {}-byte id where NCCL's has {ID_LEN}; hint: start every rank \
                                 from the same reins",
                                bytes.len()
                            ),
                        )
                    })?;
                Id::uninit(internal)
            }
        };
        // ncclCommInitRank: returns once all `world_size` ranks have called it with this id.
        let comm =
            Comm::from_rank(stream.clone(), rank, launch.world_size, id).map_err(nccl(rank, "ncclCommInitRank"))?;
        Ok(NcclWorld { comm: Mutex::new(comm), stream, rank, size: launch.world_size })
    }

    /// `buf` replaced by its element-wise `op` over ranks.
    ///
    /// Simple and correct first: each call copies the host slice to the GPU, all-reduces it
    /// there and copies it back, waiting for the copy. Gradients that live on the GPU could be
    /// reduced where they are (and in buckets, overlapped with the backward pass); that is
    /// left for when it is measured on GPUs.
    fn reduce<T: NcclType + DeviceRepr>(&self, buf: &mut [T], op: ReduceOp) -> Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let rank = self.rank;
        let comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        let mut device = self.stream.clone_htod(&*buf).map_err(driver(rank, "copying to the GPU for an all-reduce"))?;
        comm.all_reduce_in_place(&mut device, &op).map_err(nccl(rank, "ncclAllReduce"))?;
        self.stream.memcpy_dtoh(&device, buf).map_err(driver(rank, "copying an all-reduce back from the GPU"))?;
        self.stream.synchronize().map_err(driver(rank, "waiting for an all-reduce"))
    }
}

impl Collective for NcclWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        self.reduce(buf, ReduceOp::Sum)
    }
    fn all_reduce_f64(&self, buf: &mut [f64], op: Op) -> Result<()> {
        let op = match op {
            Op::Sum => ReduceOp::Sum,
            Op::Min => ReduceOp::Min,
            Op::Max => ReduceOp::Max,
        };
        self.reduce(buf, op)
    }
    /// An all-reduce of one value: it returns on a rank once every rank has contributed.
    fn barrier(&self) -> Result<()> {
        self.reduce(&mut [0f32], ReduceOp::Sum)
    }
    /// Ends this process. NCCL cannot end the other ranks: torchrun does when one exits with an
    /// error; under another launcher they may wait in their next all-reduce until stopped.
    fn abort(&self, code: i32) -> ! {
        std::process::exit(code)
    }
}
