//! How a run's processes reach its reaper: a Unix socket where there are
//! Unix sockets, its peer's uid checked; on Windows a loopback TCP port named
//! by a file at the socket's path, with tokens both ends prove themselves by
//! ([`super::tcp_socket`]). The reaper and its clients see one interface.
//!
//! `CLEANROOM_REAPER_TRANSPORT=tcp` makes Linux and macOS use Windows's
//! transport, so that the reaper's Windows code path runs in this project's
//! tests (`tests/faults.rs`); a run and its reaper must agree on it.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

/// The variable that picks Windows's transport on Unix (tests of it).
#[cfg(unix)]
const TRANSPORT_ENV: &str = "CLEANROOM_REAPER_TRANSPORT";

/// Whether the reaper's socket is a loopback TCP port with tokens (always,
/// on Windows).
#[cfg(unix)]
fn tcp() -> bool {
    std::env::var_os(TRANSPORT_ENV).is_some_and(|v| v == "tcp")
}

/// A connection between a test process and its reaper.
pub(crate) enum Stream {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Stream {
    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
        }
    }

    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            #[cfg(unix)]
            Stream::Unix(s) => s.set_read_timeout(timeout),
            Stream::Tcp(s) => s.set_read_timeout(timeout),
        }
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match *self {
            #[cfg(unix)]
            Stream::Unix(s) => (&*s).read(buf),
            Stream::Tcp(s) => (&*s).read(buf),
        }
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match *self {
            #[cfg(unix)]
            Stream::Unix(s) => (&*s).write(buf),
            Stream::Tcp(s) => (&*s).write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Connects to the reaper's socket at `path`.
pub(crate) fn connect(path: &Path) -> io::Result<Stream> {
    #[cfg(unix)]
    if !tcp() {
        return std::os::unix::net::UnixStream::connect(path).map(Stream::Unix);
    }
    super::tcp_socket::connect(path).map(Stream::Tcp)
}

/// Whoever serves `stream` is this user: the peer's uid on a Unix socket;
/// over TCP the listener proved it with its token in [`connect`].
pub(crate) fn check_server(stream: &Stream) -> io::Result<()> {
    match stream {
        #[cfg(unix)]
        Stream::Unix(s) => {
            let (theirs, mine) = (super::peer_uid(s)?, super::uid());
            if theirs != mine {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("it is served by uid {theirs}, not by you (uid {mine})"),
                ));
            }
            Ok(())
        }
        Stream::Tcp(_) => Ok(()),
    }
}

/// The reaper's end.
pub(crate) enum Listener {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixListener),
    Tcp(super::tcp_socket::Listener),
}

impl Listener {
    /// Listens at `path`, which must not exist.
    pub(crate) fn bind(path: &Path) -> io::Result<Listener> {
        #[cfg(unix)]
        if !tcp() {
            return std::os::unix::net::UnixListener::bind(path).map(Listener::Unix);
        }
        super::tcp_socket::Listener::bind(path).map(Listener::Tcp)
    }

    /// The next connection, not trusted yet ([`Incoming::trusted`]).
    pub(crate) fn accept(&self) -> io::Result<Incoming> {
        match self {
            #[cfg(unix)]
            Listener::Unix(l) => Ok(Incoming::Unix(l.accept()?.0)),
            Listener::Tcp(l) => Ok(Incoming::Tcp(l.accept()?)),
        }
    }
}

/// A connection the reaper accepted.
pub(crate) enum Incoming {
    #[cfg(unix)]
    Unix(std::os::unix::net::UnixStream),
    Tcp(super::tcp_socket::Incoming),
}

impl Incoming {
    /// The connection, once its client proved it is this user's (on a Unix
    /// socket, only this user can reach it in its private directory).
    pub(crate) fn trusted(self) -> io::Result<Stream> {
        match self {
            #[cfg(unix)]
            Incoming::Unix(s) => Ok(Stream::Unix(s)),
            Incoming::Tcp(i) => i.trusted().map(Stream::Tcp),
        }
    }
}
