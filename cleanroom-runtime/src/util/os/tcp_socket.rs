//! The reaper's socket where there are no Unix sockets (Windows): a TCP
//! listener on 127.0.0.1, and a file at the socket's path, in this user's
//! runtime directory, naming its port and two random tokens. A client
//! proves itself with the first token and the listener answers with the
//! second: another account can neither keep this user's reaper alive nor
//! pose as it (it cannot read the file). Used on Windows, and on Linux and
//! macOS with `CLEANROOM_REAPER_TRANSPORT=tcp` (its tests).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

/// How long either end waits for the other's token.
const HANDSHAKE: Duration = Duration::from_secs(2);

/// How long a client waits for the port to answer: a reaper that died
/// leaves its file, and Windows retries a refused loopback connection.
const CONNECT: Duration = Duration::from_secs(1);

pub(crate) struct Listener {
    tcp: TcpListener,
    client: String,
    server: String,
}

/// A connection whose client has not proved itself yet.
pub(crate) struct Incoming {
    stream: TcpStream,
    client: String,
    server: String,
}

impl Listener {
    /// Listens on a free loopback port and writes the file at `path`; the
    /// file must not exist (as a Unix socket's path must not).
    pub(crate) fn bind(path: &Path) -> io::Result<Listener> {
        let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let (client, server) = (crate::util::hash::random_hex(), crate::util::hash::random_hex());
        let port = tcp.local_addr()?.port();
        // Written whole beside it, then linked into place: a client never
        // reads half a file, and a file already there is not replaced.
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
        std::fs::write(&partial, format!("{port} {client} {server}\n"))?;
        let linked = std::fs::hard_link(&partial, path);
        let _ = std::fs::remove_file(&partial);
        linked.map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                io::Error::new(io::ErrorKind::AddrInUse, format!("{} exists", path.display()))
            } else {
                e
            }
        })?;
        Ok(Listener { tcp, client, server })
    }

    pub(crate) fn accept(&self) -> io::Result<Incoming> {
        let (stream, _) = self.tcp.accept()?;
        Ok(Incoming { stream, client: self.client.clone(), server: self.server.clone() })
    }
}

impl Incoming {
    /// The connection, once its first line is the client token; the
    /// listener's token is sent back.
    pub(crate) fn trusted(self) -> io::Result<TcpStream> {
        let mut stream = self.stream;
        if read_line(&mut stream)? != self.client {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "a client without this user's token"));
        }
        stream.write_all(format!("{}\n", self.server).as_bytes())?;
        Ok(stream)
    }
}

/// Connects to the listener the file at `path` names, and checks that it
/// answers with the file's listener token.
pub(crate) fn connect(path: &Path) -> io::Result<TcpStream> {
    let text = std::fs::read_to_string(path)?;
    let unreadable = || io::Error::new(io::ErrorKind::InvalidData, format!("{} names no reaper", path.display()));
    let mut words = text.split_whitespace();
    let port: u16 = words.next().and_then(|p| p.parse().ok()).ok_or_else(unreadable)?;
    let (client, server) = (words.next().ok_or_else(unreadable)?, words.next().ok_or_else(unreadable)?);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), CONNECT)?;
    stream.write_all(format!("{client}\n").as_bytes())?;
    if read_line(&mut stream)? != server {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("port {port} (from {}) does not answer as this user's reaper", path.display()),
        ));
    }
    Ok(stream)
}

/// One line, read a byte at a time so that nothing after it is taken from
/// the stream; at most 128 bytes, all within [`HANDSHAKE`] (a peer that
/// trickles bytes does not hold the other end longer).
fn read_line(stream: &mut TcpStream) -> io::Result<String> {
    let deadline = std::time::Instant::now() + HANDSHAKE;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < 128 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no whole token within the handshake's time"));
        }
        stream.set_read_timeout(Some(left))?;
        if stream.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    stream.set_read_timeout(None)?;
    Ok(String::from_utf8_lossy(&line).into_owned())
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;

        fn scratch(name: &str) -> std::path::PathBuf {
            let dir = std::env::temp_dir().join(format!("cleanroom-tcp-socket-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            dir.join("reaper.sock")
        }

        #[test]
        fn let_a_client_with_the_token_talk_to_the_listener() {
            let path = scratch("talk");
            let listener = Listener::bind(&path).unwrap();
            let server = std::thread::spawn(move || {
                let mut stream = listener.accept().unwrap().trusted().unwrap();
                let line = read_line(&mut stream).unwrap();
                stream.write_all(format!("got {line}\n").as_bytes()).unwrap();
            });
            let mut client = connect(&path).unwrap();
            client.write_all(b"attach 42\n").unwrap();
            assert_eq!(read_line(&mut client).unwrap(), "got attach 42");
            server.join().unwrap();
        }

        #[test]
        fn refuse_a_client_without_the_token() {
            let path = scratch("refuse");
            let listener = Listener::bind(&path).unwrap();
            let port: u16 = std::fs::read_to_string(&path).unwrap().split(' ').next().unwrap().parse().unwrap();
            let server = std::thread::spawn(move || listener.accept().unwrap().trusted().map(|_| ()));
            let mut stranger = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
            stranger.write_all(b"guess\n").unwrap();
            let err = server.join().unwrap().unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        }

        #[test]
        fn refuse_a_listener_that_does_not_answer_with_its_token() {
            let path = scratch("impostor");
            let impostor = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
            let port = impostor.local_addr().unwrap().port();
            std::fs::write(&path, format!("{port} c s\n")).unwrap();
            let server = std::thread::spawn(move || {
                let (mut stream, _) = impostor.accept().unwrap();
                let _ = read_line(&mut stream);
                stream.write_all(b"not-s\n").unwrap();
            });
            let err = connect(&path).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
            server.join().unwrap();
        }

        #[test]
        fn refuse_to_bind_where_a_file_is_and_fail_to_connect_where_none_is() {
            let path = scratch("bind");
            let _first = Listener::bind(&path).unwrap();
            assert_eq!(Listener::bind(&path).err().unwrap().kind(), io::ErrorKind::AddrInUse);
            std::fs::remove_file(&path).unwrap();
            assert_eq!(connect(&path).unwrap_err().kind(), io::ErrorKind::NotFound);
        }
    }
}
