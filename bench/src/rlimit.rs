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

/// Raises the soft limit on open files to the hard one (see
/// [`raise_nofile`]) and checks that it leaves room for `conns` sockets plus
/// a margin for everything else a process opens.
pub fn ensure_nofile(conns: usize) -> Result<u64, String> {
    let limit = raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    if limit < conns as u64 + NOFILE_MARGIN {
        return Err(format!(
            "{conns} connections need more open files than RLIMIT_NOFILE allows ({limit}; see `ulimit -Hn`)"
        ));
    }
    Ok(limit)
}

/// Files a process needs besides its connections (listener, epoll,
/// pipes, libraries).
pub const NOFILE_MARGIN: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_to_hard() {
        let got = raise_nofile().unwrap();
        let (soft, hard) = nofile().unwrap();
        assert_eq!((got, soft), (hard, hard));
        assert_eq!(ensure_nofile(1), Ok(hard));
        if hard < u64::MAX / 4 {
            assert!(ensure_nofile(usize::MAX / 2).is_err());
        }
    }
}
