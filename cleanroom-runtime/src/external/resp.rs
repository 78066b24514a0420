//! The little of Redis's protocol cleanroom speaks: connect (with AUTH),
//! send a command, read its reply. Shared by the rooms, the probes and the
//! cleanup of an existing server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A Redis reply, as far as cleanroom reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resp {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Resp>),
}

impl Resp {
    /// A bulk or simple reply as text.
    pub(crate) fn text(&self) -> Option<String> {
        match self {
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            _ => None,
        }
    }
}

/// Connects to `host:port` and, with a password, authenticates (as `user`
/// when given, else as the default user).
pub(crate) async fn connect(
    host: &str,
    port: u16,
    user: Option<&str>,
    password: Option<&str>,
) -> std::io::Result<TcpStream> {
    let mut stream = open(host, port).await?;
    if password.is_some() {
        stream.write_all(&auth(user, password)).await?;
        read_auth(&mut stream).await?;
    }
    Ok(stream)
}

/// Connects like [`connect`], and sends `args` right behind the `AUTH` in
/// one write: one round trip less than [`connect`] then [`call`] (a nextest
/// process leases its first Redis room this way, on its way to its test).
pub(crate) async fn connect_and_call<A: AsRef<str>>(
    host: &str,
    port: u16,
    user: Option<&str>,
    password: Option<&str>,
    args: &[A],
) -> std::io::Result<(TcpStream, Resp)> {
    let mut stream = open(host, port).await?;
    let mut out = auth(user, password);
    out.extend(encode(args));
    stream.write_all(&out).await?;
    if password.is_some() {
        read_auth(&mut stream).await?;
    }
    let reply = read_resp(&mut stream).await?;
    Ok((stream, reply))
}

async fn open(host: &str, port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The `AUTH` command for `password` (as `user` when given); nothing
/// without a password.
fn auth(user: Option<&str>, password: Option<&str>) -> Vec<u8> {
    match (user, password) {
        (Some(user), Some(password)) => encode(&["AUTH", user, password]),
        (None, Some(password)) => encode(&["AUTH", password]),
        (_, None) => Vec::new(),
    }
}

/// Reads the reply to `AUTH`: a refusal is an error naming it.
async fn read_auth(stream: &mut TcpStream) -> std::io::Result<()> {
    match read_resp(stream).await? {
        Resp::Error(e) => Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, format!("AUTH: {e}"))),
        _ => Ok(()),
    }
}

/// A command as the protocol sends it.
pub(crate) fn encode<A: AsRef<str>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        let a = a.as_ref();
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends one command and reads its reply (an error reply is a `Resp::Error`).
pub(crate) async fn call<A: AsRef<str>>(stream: &mut TcpStream, args: &[A]) -> std::io::Result<Resp> {
    stream.write_all(&encode(args)).await?;
    read_resp(stream).await
}

async fn read_line(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    loop {
        let b = stream.read_u8().await?;
        if b == b'\n' {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        line.push(b);
    }
}

/// Reads one reply.
pub(crate) fn read_resp(
    stream: &mut TcpStream,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Resp>> + Send + '_>> {
    Box::pin(async move {
        let line = read_line(stream).await?;
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("bad reply line {line:?}"));
        if line.is_empty() {
            return Err(bad());
        }
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Resp::Simple(rest.to_string()),
            "-" => Resp::Error(rest.to_string()),
            ":" => Resp::Integer(rest.parse().map_err(|_| bad())?),
            "$" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                if n < 0 {
                    Resp::Bulk(None)
                } else {
                    let mut buf = vec![0u8; n as usize + 2];
                    stream.read_exact(&mut buf).await?;
                    buf.truncate(n as usize);
                    Resp::Bulk(Some(buf))
                }
            }
            "*" => {
                let n: i64 = rest.parse().map_err(|_| bad())?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(read_resp(stream).await?);
                }
                Resp::Array(items)
            }
            _ => return Err(bad()),
        })
    })
}
