//! Unix domain sockets: `bind_unix`, `connect_unix` (Linux, macOS, the BSDs; the module is
//! not compiled on Windows).
#![forbid(unsafe_code)]

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use socket2::SockAddr;

use super::socket::AsyncSocket;

/// The address of a Unix socket at `path`. A path the kernel would cut short (too long, or
/// with a NUL byte inside) is refused. On Linux a path starting with a NUL byte is an abstract
/// name (no file).
pub(crate) fn unix_addr(path: &Path) -> io::Result<SockAddr> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty Unix socket path",
        ));
    }
    if bytes[1..].contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "Unix socket path with a NUL byte inside (only a leading NUL, for an abstract name)",
        ));
    }
    SockAddr::unix(path).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "Unix socket path of {} bytes is longer than the OS allows",
                bytes.len()
            ),
        )
    })
}

impl AsyncSocket {
    /// Bind a Unix socket to `path` (Nim's `bindUnix`); then `listen` for a stream socket.
    /// On Linux a path starting with a NUL byte (`"\0name"`) is an abstract name.
    ///
    /// # Portability
    ///
    /// Unix only (Linux, macOS, the BSDs): absent on Windows (the module is compiled on Unix
    /// only), as in Nim's reference, where it is POSIX only.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a path the OS cannot take whole (too long, NUL inside);
    /// `AddrInUse` if the path exists (remove a stale socket file first); the OS's error.
    ///
    /// # Examples
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Domain, wait_for};
    /// let dir = std::env::temp_dir().join(format!("asyncnet-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("s.sock");
    /// # let _ = std::fs::remove_file(&path);
    /// wait_for(async {
    ///     let server = AsyncSocket::builder().domain(Domain::UNIX).build()?;
    ///     server.bind_unix(&path)?;
    ///     server.listen()?;
    ///     let client = AsyncSocket::builder().domain(Domain::UNIX).build()?;
    ///     client.connect_unix(&path).await?;
    ///     let peer = server.accept().await?;
    ///     client.send("hi\n").await?;
    ///     assert_eq!(peer.recv_line().await?.as_deref(), Some("hi"));
    ///     assert_eq!(server.local_addr()?.0, path.to_string_lossy());
    ///     Ok::<(), std::io::Error>(())
    /// })?;
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind_unix(&self, path: impl AsRef<Path>) -> io::Result<()> {
        let addr = unix_addr(path.as_ref())?;
        self.socket()?.bind(&addr)
    }

    /// Connect a Unix socket to the socket bound at `path` (Nim's `connectUnix`). A datagram
    /// socket may then use `send` and `recv`.
    ///
    /// # Portability
    ///
    /// Unix only (Linux, macOS, the BSDs): absent on Windows (the module is compiled on Unix
    /// only), as in Nim's reference, where it is POSIX only.
    ///
    /// # Errors
    ///
    /// `NotFound` if nothing is at `path`; `ConnectionRefused` if nothing listens there;
    /// `InvalidInput` for a path the OS cannot take whole, or a socket wrapped with
    /// `wrap_socket` (use `wrap_connected_socket` after connecting); the OS's error.
    ///
    /// # Cancel safety
    ///
    /// As [`connect`](AsyncSocket::connect): close the socket after dropping the future.
    ///
    /// # Examples
    ///
    /// A connected datagram socket (for a stream socket, see
    /// [`bind_unix`](AsyncSocket::bind_unix)):
    ///
    /// ```
    /// use asyncnet::{AsyncSocket, Domain, SockType, wait_for};
    /// let dir = std::env::temp_dir().join(format!("asyncnet-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("log.sock");
    /// # let _ = std::fs::remove_file(&path);
    /// let unix_dgram = || {
    ///     AsyncSocket::builder().domain(Domain::UNIX).sock_type(SockType::DGRAM).build()
    /// };
    /// let r = wait_for(async {
    ///     let server = unix_dgram()?;
    ///     server.bind_unix(&path)?;
    ///     let client = unix_dgram()?;
    ///     client.connect_unix(&path).await?;
    ///     client.send("one datagram").await?; // no address needed once connected
    ///     assert_eq!(server.recv(64).await?, b"one datagram");
    ///
    ///     // Nothing bound at a path: `NotFound`.
    ///     let e = unix_dgram()?.connect_unix(dir.join("nobody")).await.unwrap_err();
    ///     assert_eq!(e.kind(), std::io::ErrorKind::NotFound);
    ///     Ok::<(), std::io::Error>(())
    /// });
    /// std::fs::remove_dir_all(&dir)?;
    /// r?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub async fn connect_unix(&self, path: impl AsRef<Path>) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if self.is_ssl() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix socket has no host name to verify: connect it, then call \
                 wrap_connected_socket with the server's name",
            ));
        }
        let addr = unix_addr(path.as_ref())?;
        self.connect_sockaddr(&addr).await
    }
}
