//! How a run's processes reach its reaper: a Unix socket where there are
//! Unix sockets, its peer's uid checked; on Windows a loopback TCP port named
//! by a file at the socket's path, with tokens both ends prove themselves by
//! ([`super::tcp_socket`]). The reaper and its clients see one interface.

use std::io;
use std::path::Path;

/// A connection between a test process and its reaper.
#[cfg(unix)]
pub(crate) type Stream = std::os::unix::net::UnixStream;
/// A connection between a test process and its reaper.
#[cfg(windows)]
pub(crate) type Stream = std::net::TcpStream;

/// Connects to the reaper's socket at `path`.
pub(crate) fn connect(path: &Path) -> io::Result<Stream> {
    #[cfg(unix)]
    return Stream::connect(path);
    #[cfg(windows)]
    return super::tcp_socket::connect(path);
}

/// Whoever serves `stream` is this user: the peer's uid on Unix; on
/// Windows the listener proved it with its token in [`connect`].
pub(crate) fn check_server(stream: &Stream) -> io::Result<()> {
    #[cfg(unix)]
    {
        let (theirs, mine) = (super::peer_uid(stream)?, super::uid());
        if theirs != mine {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("it is served by uid {theirs}, not by you (uid {mine})"),
            ));
        }
    }
    #[cfg(windows)]
    let _ = stream;
    Ok(())
}

/// The reaper's end.
pub(crate) struct Listener {
    #[cfg(unix)]
    inner: std::os::unix::net::UnixListener,
    #[cfg(windows)]
    inner: super::tcp_socket::Listener,
}

impl Listener {
    /// Listens at `path`, which must not exist.
    pub(crate) fn bind(path: &Path) -> io::Result<Listener> {
        #[cfg(unix)]
        let inner = std::os::unix::net::UnixListener::bind(path)?;
        #[cfg(windows)]
        let inner = super::tcp_socket::Listener::bind(path)?;
        Ok(Listener { inner })
    }

    /// The next connection, not trusted yet ([`Incoming::trusted`]).
    pub(crate) fn accept(&self) -> io::Result<Incoming> {
        #[cfg(unix)]
        return Ok(Incoming { inner: self.inner.accept()?.0 });
        #[cfg(windows)]
        return Ok(Incoming { inner: self.inner.accept()? });
    }
}

/// A connection the reaper accepted.
pub(crate) struct Incoming {
    #[cfg(unix)]
    inner: Stream,
    #[cfg(windows)]
    inner: super::tcp_socket::Incoming,
}

impl Incoming {
    /// The connection, once its client proved it is this user's (on Unix,
    /// only this user can reach the socket in its private directory).
    pub(crate) fn trusted(self) -> io::Result<Stream> {
        #[cfg(unix)]
        return Ok(self.inner);
        #[cfg(windows)]
        return self.inner.trusted();
    }
}
