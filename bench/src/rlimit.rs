//! `RLIMIT_NOFILE`: the `idle` workload holds thousands of connections, in
//! the load generator and in the server alike.

use std::io;

/// Files a process needs besides its connections (listener, epoll,
/// pipes, libraries).
pub const NOFILE_MARGIN: u64 = 64;

/// Raises the soft limit on open files to the hard limit (children started
/// afterwards inherit it). Returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_to_hard() {
        let got = raise_nofile().unwrap();
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!((got, soft), (hard, hard));
        assert_eq!(ensure_nofile(1), Ok(hard));
        if hard < u64::MAX / 4 {
            assert!(ensure_nofile(usize::MAX / 2).is_err());
        }
    }
}
