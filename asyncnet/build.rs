//! Sets `cfg(uring)` where the io_uring driver is built: Linux, on the architectures the
//! `io-uring` crate ships bindings for (elsewhere that crate does not compile, so the driver
//! is left out and loops run on epoll, as `io_uring_support` then says). Keep the list the
//! same as the `io-uring` dependency's in `Cargo.toml`.
#![forbid(unsafe_code)]

/// The architectures of the `io-uring` crate's prebuilt bindings (its `src/sys/mod.rs`).
const URING_ARCHES: [&str; 5] = ["x86_64", "aarch64", "riscv64", "loongarch64", "powerpc64"];

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rustc-check-cfg=cfg(uring)");
    let var = |name| std::env::var(name).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") == "linux"
        && URING_ARCHES.contains(&var("CARGO_CFG_TARGET_ARCH").as_str())
    {
        println!("cargo::rustc-cfg=uring");
    }
}
