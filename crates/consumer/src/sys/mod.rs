//! Platform code: shared memory, FIFOs, process checks, clocks and signals.
//! One module per OS behind the same functions; only Linux exists today.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
compile_error!("framebus-consumer supports Linux only for now (see sys/linux.rs for the interface a port implements)");
