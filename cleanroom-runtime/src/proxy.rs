//! A TCP proxy between a test and a service's published port, for network
//! conditions a test asks for: added latency (with jitter), bandwidth in
//! each direction, connections reset as they arrive ("loss": a proxy sees
//! streams, not packets, so it cannot drop a packet), and a cut (the service
//! unreachable for a while). The way Toxiproxy serves testcontainers in
//! other languages, but inside the test process, on cleanroom's runtime:
//! no container, no kernel `netem` (which this project cannot count on), and
//! it works wherever the test can reach the service (Docker Desktop's VM
//! included). Traffic between containers does not pass through it.
//!
//! Each proxy belongs to one test's handle, so one test's slow network never
//! reaches another test; it goes away with the handle.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// The conditions a proxy applies. `Default` is none: traffic passes as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetworkConditions {
    /// Added to every chunk of data, each way.
    pub latency: Duration,
    /// Up to this much more or less than `latency`, at random per chunk.
    pub jitter: Duration,
    /// Bytes per second from the test to the service (`None`: unlimited).
    pub upload: Option<u64>,
    /// Bytes per second from the service to the test (`None`: unlimited).
    pub download: Option<u64>,
    /// The share (0 to 1) of new connections reset as they arrive.
    pub reset_rate: f64,
    /// Until when the service is unreachable: new connections are closed at
    /// once and open ones were closed when the cut began.
    pub cut_until: Option<Instant>,
}

impl NetworkConditions {
    fn cut(&self) -> bool {
        self.cut_until.is_some_and(|t| Instant::now() < t)
    }
}

/// Bytes that went through a proxy, each way.
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    /// The service whose metrics count it too.
    service: String,
    pub(crate) up: AtomicU64,
    pub(crate) down: AtomicU64,
}

/// A running proxy: a port on 127.0.0.1 that forwards to `target`.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) port: u16,
    pub(crate) conditions: Arc<Mutex<NetworkConditions>>,
    pub(crate) traffic: Arc<Traffic>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    accept: AbortHandle,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to
    /// `host:port`, on cleanroom's runtime; what goes through counts in
    /// `service`'s metrics too.
    pub(crate) fn start(service: &str, host: &str, port: u16) -> std::io::Result<Proxy> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let local = listener.local_addr()?.port();
        let conditions = Arc::new(Mutex::new(NetworkConditions::default()));
        let traffic = Arc::new(Traffic { service: service.to_string(), ..Traffic::default() });
        let connections: Arc<Mutex<Vec<AbortHandle>>> = Arc::new(Mutex::new(Vec::new()));
        let target = (host.to_string(), port);
        let (c, t, conns) = (conditions.clone(), traffic.clone(), connections.clone());
        let accept = crate::util::background::runtime()
            .spawn(async move {
                let Ok(listener) = TcpListener::from_std(listener) else { return };
                let mut random = Random::seeded();
                while let Ok((client, _)) = listener.accept().await {
                    let now = *c.lock().unwrap_or_else(|e| e.into_inner());
                    if now.cut() {
                        drop(client);
                        continue;
                    }
                    if now.reset_rate > 0.0 && random.next_f64() < now.reset_rate {
                        // SO_LINGER 0: the close is a reset, as a lost
                        // connection looks to the client.
                        // Tokio deprecates SO_LINGER for the blocking close a
                        // non-zero one makes; zero closes at once.
                        #[allow(deprecated)]
                        let _ = client.set_linger(Some(Duration::ZERO));
                        drop(client);
                        continue;
                    }
                    let (c, t, target) = (c.clone(), t.clone(), target.clone());
                    let task = tokio::spawn(async move {
                        let Ok(server) = TcpStream::connect((target.0.as_str(), target.1)).await else { return };
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        let (cr, cw) = client.into_split();
                        let (sr, sw) = server.into_split();
                        let up = pump(cr, sw, c.clone(), t.clone(), Direction::Up);
                        let down = pump(sr, cw, c, t, Direction::Down);
                        // Either side closing ends the connection.
                        tokio::select! { _ = up => {}, _ = down => {} }
                    });
                    let mut all = conns.lock().unwrap_or_else(|e| e.into_inner());
                    all.retain(|h| !h.is_finished());
                    all.push(task.abort_handle());
                }
            })
            .abort_handle();
        Ok(Proxy { port: local, conditions, traffic, connections, accept })
    }

    /// Changes the conditions; with a cut, open connections are closed now.
    pub(crate) fn set(&self, change: impl FnOnce(&mut NetworkConditions)) {
        let cut = {
            let mut c = self.conditions.lock().unwrap_or_else(|e| e.into_inner());
            change(&mut c);
            c.cut()
        };
        if cut {
            for conn in self.connections.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                conn.abort();
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for conn in self.connections.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            conn.abort();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Up,
    Down,
}

/// Copies one direction: each chunk is read at once, handed on after the
/// latency (so chunks in flight overlap, as on a real link), and written no
/// faster than the bandwidth allows.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    conditions: Arc<Mutex<NetworkConditions>>,
    traffic: Arc<Traffic>,
    direction: Direction,
) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let c = conditions.clone();
    let reader = async move {
        let mut random = Random::seeded();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let now = *c.lock().unwrap_or_else(|e| e.into_inner());
            // A limited link delivers in small slices, not one burst.
            let rate = match direction {
                Direction::Up => now.upload,
                Direction::Down => now.download,
            };
            let max = rate.map_or(buf.len(), |r| ((r / 20) as usize).clamp(1, buf.len()));
            let n = match from.read(&mut buf[..max]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Uniform within latency ± jitter, never below zero.
            let offset = now.jitter.mul_f64(random.next_f64() * 2.0);
            let delay = (now.latency + offset).saturating_sub(now.jitter);
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        let mut free_at = Instant::now();
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due.into()).await;
            let now = *conditions.lock().unwrap_or_else(|e| e.into_inner());
            if now.cut() {
                break;
            }
            let rate = match direction {
                Direction::Up => now.upload,
                Direction::Down => now.download,
            };
            if let Some(rate) = rate.filter(|r| *r > 0) {
                // The link is busy until the last chunk has gone at its rate.
                let start = free_at.max(Instant::now());
                free_at = start + Duration::from_secs_f64(chunk.len() as f64 / rate as f64);
                tokio::time::sleep_until(free_at.into()).await;
            }
            let counter = match direction {
                Direction::Up => &traffic.up,
                Direction::Down => &traffic.down,
            };
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
            let n = chunk.len() as u64;
            crate::metrics::service(&traffic.service, |m| match direction {
                Direction::Up => m.performance.proxied_sent_bytes += n,
                Direction::Down => m.performance.proxied_received_bytes += n,
            });
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// xorshift64*, seeded from the clock: jitter and resets need no more.
struct Random(u64);

impl Random {
    fn seeded() -> Random {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos());
        Random((nanos as u64) | 1)
    }

    /// A number in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    mod should {
        use super::super::*;
        use std::io::{Read, Write};

        /// An echo server on 127.0.0.1, on a thread of its own.
        fn echo() -> u16 {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
            let port = listener.local_addr().unwrap().port();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let mut s = stream;
                        let mut buf = [0u8; 65536];
                        while let Ok(n) = s.read(&mut buf) {
                            if n == 0 || s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            });
            port
        }

        fn round_trip(port: u16, bytes: usize) -> std::io::Result<Duration> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            let started = Instant::now();
            s.write_all(&vec![7u8; bytes])?;
            let mut got = vec![0u8; bytes];
            s.read_exact(&mut got)?;
            Ok(started.elapsed())
        }

        #[test]
        fn pass_traffic_as_it_is_without_conditions() {
            let proxy = Proxy::start("proxy-test", "127.0.0.1", echo()).unwrap();
            round_trip(proxy.port, 1000).unwrap();
            assert_eq!(proxy.traffic.up.load(Ordering::Relaxed), 1000);
            assert_eq!(proxy.traffic.down.load(Ordering::Relaxed), 1000);
        }

        #[test]
        fn add_the_latency_each_way() {
            let proxy = Proxy::start("proxy-test", "127.0.0.1", echo()).unwrap();
            proxy.set(|c| c.latency = Duration::from_millis(100));
            let took = round_trip(proxy.port, 10).unwrap();
            assert!(took >= Duration::from_millis(200), "there and back: {took:?}");
        }

        #[test]
        fn hold_the_bandwidth() {
            let proxy = Proxy::start("proxy-test", "127.0.0.1", echo()).unwrap();
            proxy.set(|c| c.download = Some(100_000));
            // 50 kB back at 100 kB/s: at least half a second.
            let took = round_trip(proxy.port, 50_000).unwrap();
            assert!(took >= Duration::from_millis(450), "{took:?}");
        }

        #[test]
        fn refuse_service_while_cut_and_serve_again_after() {
            let proxy = Proxy::start("proxy-test", "127.0.0.1", echo()).unwrap();
            let mut open = std::net::TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
            open.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            proxy.set(|c| c.cut_until = Some(Instant::now() + Duration::from_millis(500)));
            let mut buf = [0u8; 1];
            let _ = open.write_all(b"x");
            assert!(matches!(open.read(&mut buf), Ok(0) | Err(_)), "an open connection is closed by the cut");
            assert!(round_trip(proxy.port, 10).is_err(), "a new one is closed while cut");
            std::thread::sleep(Duration::from_millis(600));
            round_trip(proxy.port, 10).expect("served again after the cut");
        }

        #[test]
        fn reset_every_connection_at_a_rate_of_one() {
            let proxy = Proxy::start("proxy-test", "127.0.0.1", echo()).unwrap();
            proxy.set(|c| c.reset_rate = 1.0);
            assert!(round_trip(proxy.port, 10).is_err());
            proxy.set(|c| c.reset_rate = 0.0);
            round_trip(proxy.port, 10).unwrap();
        }

        #[test]
        fn draw_numbers_between_zero_and_one() {
            let mut r = Random::seeded();
            for _ in 0..1000 {
                let x = r.next_f64();
                assert!((0.0..1.0).contains(&x));
            }
        }
    }
}
