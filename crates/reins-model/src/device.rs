//! Which device commands run on: `REINS_DEVICE=cpu|cuda`, or unset for a CUDA GPU when the
//! binary was built with the `cuda` feature and a GPU is usable, the CPU otherwise. The GPU is
//! number `LOCAL_RANK` (set by torchrun for each rank of a machine, see `reins_train::parallel`),
//! GPU 0 when it is unset.
//!
//! A `cuda` build opens the CUDA libraries at run time (cudarc's `dynamic-loading`, see
//! vendor/README.md), so the same binary starts on machines without the NVIDIA driver; there
//! the auto-detection says so on stderr, once, and runs on the CPU.

use crate::error::{ModelError, Result};
use candle_core::Device;

/// The device named by `REINS_DEVICE` (`cpu`, `cuda`; unset or empty: auto-detect).
pub fn default_device() -> Result<Device> {
    select(std::env::var("REINS_DEVICE").ok().as_deref())
}

/// [`default_device`] for a given `REINS_DEVICE` value.
pub fn select(choice: Option<&str>) -> Result<Device> {
    match choice.map(str::trim) {
        Some("cpu") => Ok(Device::Cpu),
        Some("cuda") => cuda().map_err(|why| {
            ModelError::Usage(format!(
                "REINS_DEVICE=cuda: no usable CUDA device ({why}); hint: unset REINS_DEVICE or set it to `cpu` to run on the CPU"
            ))
        }),
        None | Some("") => Ok(cuda().unwrap_or_else(|why| {
            if cfg!(feature = "cuda") {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| eprintln!("reins: no CUDA device found ({why}): running on the CPU"));
            }
            Device::Cpu
        })),
        Some(other) => Err(ModelError::Usage(format!(
            "REINS_DEVICE={other}: unknown device; hint: use `cpu` or `cuda`, or leave it unset for CUDA GPU 0 when present and the CPU otherwise"
        ))),
    }
}

/// The GPU this process uses: `LOCAL_RANK`, 0 when unset. A data-parallel launch has checked
/// the variable before any device is opened (`reins_train::parallel::rendezvous::Launch`).
pub fn cuda_ordinal() -> usize {
    std::env::var("LOCAL_RANK").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// CUDA GPU [`cuda_ordinal`], or why not. Probed once per process: every `Device::new_cuda` is a new context
/// whose tensors candle will not mix with another's, so all callers share this one.
fn cuda() -> std::result::Result<Device, String> {
    static DEVICE: std::sync::OnceLock<std::result::Result<Device, String>> = std::sync::OnceLock::new();
    DEVICE.get_or_init(open_cuda).clone()
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> std::result::Result<Device, String> {
    Err("this reins was built without the `cuda` feature; scripts/build-cuda.sh builds one with it".into())
}

#[cfg(feature = "cuda")]
fn open_cuda() -> std::result::Result<Device, String> {
    use candle_core::cuda_backend::cudarc;
    // cudarc opens each library the first time one of its functions is called and panics (in
    // a lazy static) when it is missing. Its own `is_culib_present` looks under the same names
    // without panicking, so a machine without the driver is an ordinary "no" here. Opening a
    // device needs the driver, cuBLAS (which loads cuBLASLt) and cuRAND.
    let found = |present: unsafe fn() -> bool, missing: &str| {
        // SAFETY: dlopens the library under cudarc's candidate names (running its initialisers,
        // as any use would) and closes it again; calls nothing in it.
        if unsafe { present() } {
            Ok(())
        } else {
            Err(missing.to_string())
        }
    };
    found(cudarc::driver::sys::is_culib_present, "libcuda.so.1, the NVIDIA driver, not found")?;
    found(
        cudarc::cublas::sys::is_culib_present,
        "libcublas.so.13 (cuBLAS) not found; add its folder to LD_LIBRARY_PATH",
    )?;
    found(
        cudarc::curand::sys::is_culib_present,
        "libcurand.so.10 (cuRAND) not found; add its folder to LD_LIBRARY_PATH",
    )?;
    // A library that opens but lacks a symbol (a driver older than the CUDA this binary was
    // built with) still panics inside cudarc, in opening the device or in describing an error;
    // catching that keeps it a "no" too. The panic's message becomes the reason, so the
    // default hook's report (and backtrace) is muted for the probe, which runs once.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // candle appends a backtrace to the error under RUST_BACKTRACE; the reason is its first line.
    let reason = |e: candle_core::Error| e.to_string().lines().next().unwrap_or_default().to_string();
    let opened = std::panic::catch_unwind(|| Device::new_cuda(cuda_ordinal()).map_err(reason));
    std::panic::set_hook(hook);
    opened.unwrap_or_else(|panic| {
        Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA libraries panicked".into()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_cpu() -> Result<()> {
        assert!(select(Some("cpu"))?.is_cpu());
        assert!(select(Some(" cpu "))?.is_cpu());
        Ok(())
    }

    #[test]
    fn an_unknown_device_is_an_error_that_names_it() {
        let err = select(Some("gpu")).unwrap_err().to_string();
        assert!(err.contains("REINS_DEVICE=gpu") && err.contains("`cpu` or `cuda`"), "{err}");
    }

    #[test]
    fn auto_detection_never_fails() -> Result<()> {
        let auto = select(None)?;
        assert_eq!(auto.is_cuda(), select(Some("cuda")).is_ok());
        assert_eq!(select(Some(""))?.is_cuda(), auto.is_cuda());
        Ok(())
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_cpu_build_runs_on_the_cpu_and_refuses_cuda_with_a_hint() -> Result<()> {
        assert!(select(None)?.is_cpu());
        let err = select(Some("cuda")).unwrap_err().to_string();
        assert!(err.contains("without the `cuda` feature") && err.contains("hint:"), "{err}");
        Ok(())
    }
}
