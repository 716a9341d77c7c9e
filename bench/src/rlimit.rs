//! `RLIMIT_NOFILE`: the `idle` workload holds thousands of connections, in
//! the load generator and in the server alike.

// `rlim_t` is u64 on 64-bit Linux only.
#![allow(clippy::unnecessary_cast)]

use std::io;

/// The soft and hard limits on open files of this process.
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((rl.rlim_cur as u64, rl.rlim_max as u64))
}

/// Raises the soft limit on open files to the hard limit (children started
/// afterwards inherit it). Returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if rl.rlim_cur != rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: `rl` is a valid rlimit, soft limit not above the hard one.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(rl.rlim_cur as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_to_hard() {
        let got = raise_nofile().unwrap();
        let (soft, hard) = nofile().unwrap();
        assert_eq!((got, soft), (hard, hard));
    }
}
