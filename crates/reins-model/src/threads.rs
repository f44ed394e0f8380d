//! Where the compute runs: on a worker of rayon's global pool, not on the thread that asks.
//!
//! The matrix products (candle's `gemm`) and reins' fused kernels split each op over rayon's
//! global pool. Called from a thread outside the pool, every op injects its tasks into the
//! pool and puts the caller to sleep on a futex until a worker wakes it: two context switches
//! per op, and an op of a decode step lasts microseconds. Called from a worker, the same op
//! runs as a fork-join inside the pool: the caller does its share, an idle worker steals the
//! rest, and nobody sleeps between ops. On a 2-core AVX-512 CPU (`reins bench`, same sitting)
//! sampling went from 3,600–3,700 to 5,400–5,550 tokens/s and GRPO from 22.7–22.9 to
//! 29.9–32.1 completions/s; the training step, whose ops are long, stayed within noise.
//!
//! The `reins` binary runs each compute command through [`on_pool`]; a program that uses
//! the library calls it around its own training or sampling loop.

/// Runs `f` on a worker thread of rayon's global pool and returns what it returns; from a
/// worker already, runs it in place.
///
/// `f` should not block waiting on another thread that itself needs the pool: with
/// `RAYON_NUM_THREADS=1` the only worker would be the one waiting.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // `rayon::scope` runs its body on a worker (injecting it into the global pool when called
    // from outside, blocking the caller until it ends) and returns once it and anything it
    // spawned are done; nothing is spawned here.
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_on_a_worker_and_returns_its_value() {
        assert!(rayon::current_thread_index().is_none(), "the test harness thread is no worker");
        let (inside, value) = super::on_pool(|| (rayon::current_thread_index(), 41 + 1));
        assert!(inside.is_some(), "the closure ran outside rayon's pool");
        assert_eq!(value, 42);
        // Nested: stays on the same worker.
        let nested = super::on_pool(|| {
            let outer = rayon::current_thread_index();
            super::on_pool(move || rayon::current_thread_index() == outer)
        });
        assert!(nested);
    }
}
