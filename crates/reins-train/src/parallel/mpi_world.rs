//! The MPI world (`--features mpi`): `MPI_COMM_WORLD` behind a mutex, host buffers reduced in
//! place. Joined by [`super::init_from_env`] under `mpirun`.

use std::sync::Mutex;

use mpi::collective::SystemOperation;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::{Collective, Op};
use crate::Result;

/// `MPI_COMM_WORLD`, one call at a time.
pub struct MpiWorld {
    comm: Mutex<SimpleCommunicator>,
    rank: usize,
    size: usize,
}

// SAFETY: MPI is initialised with `MPI_THREAD_SERIALIZED` and every call goes through the
// mutex, so no two threads are inside MPI at once; the communicator is a handle MPI owns.
unsafe impl Send for MpiWorld {}
unsafe impl Sync for MpiWorld {}

impl MpiWorld {
    pub fn new(comm: SimpleCommunicator) -> Self {
        let (rank, size) = (comm.rank() as usize, comm.size() as usize);
        MpiWorld { comm: Mutex::new(comm), rank, size }
    }
    fn comm(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
        self.comm.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn op(o: Op) -> SystemOperation {
    match o {
        Op::Sum => SystemOperation::sum(),
        Op::Min => SystemOperation::min(),
        Op::Max => SystemOperation::max(),
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.size
    }
    fn all_reduce_f32(&self, buf: &mut [f32]) -> Result<()> {
        let send = buf.to_vec();
        self.comm().all_reduce_into(&send[..], buf, SystemOperation::sum());
        Ok(())
    }
    fn all_reduce_f64(&self, buf: &mut [f64], o: Op) -> Result<()> {
        let send = buf.to_vec();
        self.comm().all_reduce_into(&send[..], buf, op(o));
        Ok(())
    }
    fn barrier(&self) -> Result<()> {
        self.comm().barrier();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        self.comm().abort(code)
    }
}
