//! The vault's connections: the TLS accept loop, its time limits and its caps.
//!
//! A client gets a connection only under the caps (in all, and per client address); the TLS
//! handshake must end within a time limit, every request's head must arrive within another
//! (hyper's header timeout, which also closes a keep-alive connection whose next request never
//! comes), and a connection that moves no byte either way while no request is being handled is
//! closed (a client that stops reading an answer). Request bodies have their own size and rate
//! limits (`body.rs`). The defaults are in [`Limits`] and docs/protocol.md.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The vault's limits on connections and request bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The TLS handshake must end within this (`FERRY_VAULT_TLS_TIMEOUT_S`, 10 s).
    pub tls_handshake: Duration,
    /// A request's head must have arrived this long after the connection became ready for it
    /// (after the handshake or the previous answer): `FERRY_VAULT_HEADER_TIMEOUT_S`, 30 s.
    pub header: Duration,
    /// A connection that moves no byte for this long while no request is being handled is
    /// closed (`FERRY_VAULT_IDLE_TIMEOUT_S`, 60 s).
    pub idle: Duration,
    /// A request body must arrive at this many bytes per second at least, averaged over
    /// `body_window` (`FERRY_VAULT_MIN_BODY_RATE`, 1024).
    pub min_body_rate: u64,
    /// `FERRY_VAULT_BODY_WINDOW_S`, 30 s.
    pub body_window: Duration,
    /// Open connections in all (`--max-connections`, 4096).
    pub max_connections: usize,
    /// Open connections from one client address (`--max-connections-per-ip`, 512).
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            tls_handshake: Duration::from_secs(10),
            header: Duration::from_secs(30),
            idle: Duration::from_mins(1),
            min_body_rate: 1024,
            body_window: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 512,
        }
    }
}

impl Limits {
    /// The defaults, with the time limits and the body rate the `FERRY_VAULT_*` variables set.
    pub fn from_env() -> Limits {
        fn var(name: &str) -> Option<u64> {
            std::env::var(name).ok().and_then(|v| v.parse().ok())
        }
        let d = Limits::default();
        let secs = |name: &str, default: Duration| var(name).map_or(default, |s| Duration::from_secs(s.max(1)));
        Limits {
            tls_handshake: secs("FERRY_VAULT_TLS_TIMEOUT_S", d.tls_handshake),
            header: secs("FERRY_VAULT_HEADER_TIMEOUT_S", d.header),
            idle: secs("FERRY_VAULT_IDLE_TIMEOUT_S", d.idle),
            min_body_rate: var("FERRY_VAULT_MIN_BODY_RATE").unwrap_or(d.min_body_rate),
            body_window: secs("FERRY_VAULT_BODY_WINDOW_S", d.body_window),
            ..d
        }
    }
}

/// Serves `app` on every TLS connection `listener` accepts, within `limits`.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: Router,
    limits: &Limits,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let caps = Arc::new(Caps::new(limits));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, typically: give the open connections time to end.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admitted) = caps.admit(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let (acceptor, app, limits) = (acceptor.clone(), app.clone(), limits.clone());
        tokio::spawn(async move {
            let _admitted = admitted;
            let tls = match tokio::time::timeout(limits.tls_handshake, acceptor.accept(tcp)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake with {peer} took longer than {:?}; closed", limits.tls_handshake);
                    return;
                }
            };
            let activity = Arc::new(Activity::new());
            let io = hyper_util::rt::TokioIo::new(Watched { inner: tls, activity: activity.clone() });
            // The client's address, for the dashboard's per-address login lockouts.
            let inner = hyper_util::service::TowerToHyperService::new(app.layer(axum::Extension(axum::extract::ConnectInfo(peer))));
            let busy = activity.clone();
            let service = hyper::service::service_fn(move |req| {
                let handling = Handling::new(&busy);
                let answer = hyper::service::Service::call(&inner, req);
                async move {
                    let answer = answer.await;
                    drop(handling);
                    answer
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header)
                .serve_connection(io, service);
            tokio::select! {
                r = conn => {
                    if let Err(e) = r {
                        tracing::debug!("connection from {peer}: {e}");
                    }
                }
                () = activity.idle_for(limits.idle) => {
                    tracing::debug!("connection from {peer} idle for {:?}; closed", limits.idle);
                }
            }
        });
    }
}

/// The connection caps: open connections in all and per client address.
struct Caps {
    total: Arc<tokio::sync::Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: usize,
    /// Connections refused since the last warning, and when that was.
    refused: Mutex<(u64, Option<Instant>)>,
}

/// One admitted connection; gives its places back when dropped.
struct Admitted {
    caps: Arc<Caps>,
    ip: IpAddr,
    _total: tokio::sync::OwnedSemaphorePermit,
}

impl Caps {
    fn new(limits: &Limits) -> Caps {
        Caps {
            total: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            per_ip: Mutex::default(),
            max_per_ip: limits.max_connections_per_ip.max(1),
            refused: Mutex::default(),
        }
    }

    /// A place for a connection from `ip`, or `None` (logged, at most once a minute) when a cap
    /// is reached.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let Ok(total) = self.total.clone().try_acquire_owned() else {
            self.refuse(ip, "the vault's cap on open connections");
            return None;
        };
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
            let n = per_ip.entry(ip).or_default();
            if *n >= self.max_per_ip {
                drop(per_ip);
                self.refuse(ip, "the cap on open connections per client address");
                return None;
            }
            *n += 1;
        }
        Some(Admitted { caps: self.clone(), ip, _total: total })
    }

    fn refuse(&self, ip: IpAddr, cap: &str) {
        tracing::debug!("refused a connection from {ip}: {cap} is reached");
        let mut refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        refused.0 += 1;
        if refused.1.is_none_or(|last| last.elapsed() >= Duration::from_mins(1)) {
            tracing::warn!(
                "refused {} connection(s) in the last minute, the last from {ip}: {cap} is reached \
                 (--max-connections, --max-connections-per-ip)",
                refused.0
            );
            *refused = (0, Some(Instant::now()));
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per_ip = self.caps.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// What a connection did last: when a byte last moved (milliseconds since `start`), and how
/// many requests are being handled.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    handling: AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity { start: Instant::now(), last_ms: AtomicU64::new(0), handling: AtomicUsize::new(0) }
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Returns once the connection has moved no byte for `idle` while no request was being
    /// handled (a handler may work for minutes without a byte moving: a retention run).
    async fn idle_for(&self, idle: Duration) {
        loop {
            let quiet = self.start.elapsed().saturating_sub(Duration::from_millis(self.last_ms.load(Ordering::Relaxed)));
            if quiet >= idle && self.handling.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(idle.saturating_sub(quiet).max(Duration::from_millis(100))).await;
        }
    }
}

/// A request being handled; its start and end count as activity.
struct Handling(Arc<Activity>);

impl Handling {
    fn new(a: &Arc<Activity>) -> Handling {
        a.handling.fetch_add(1, Ordering::Relaxed);
        a.touch();
        Handling(a.clone())
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.0.touch();
        self.0.handling.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's stream, noting every byte that moves.
struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[std::io::IoSlice<'_>]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_in_all_and_per_address() {
        let caps = Arc::new(Caps::new(&Limits { max_connections: 3, max_connections_per_ip: 2, ..Limits::default() }));
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert!(caps.admit(a).is_none(), "a third from one address");
        let _b1 = caps.admit(b).unwrap();
        assert!(caps.admit(c).is_none(), "a fourth in all");
        drop(a1);
        assert!(caps.admit(a).is_some(), "a place given back is free again");
        assert!(caps.admit(c).is_some());
    }
}
