//! The vault under hostile input (issue #24): a real `ferry vault serve` on loopback, and
//! clients acting as an attacker would, over raw TCP and raw TLS connections: writes to
//! machines that do not exist, refused uploads, bodies sent without a token or larger than the
//! call takes, half-sent headers and bodies, silent connections, too many connections.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use crate::vault::{machine, registration, Vault};

/// Accepts any certificate: the attacker's side, which pins nothing.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn addr(vault: &Vault) -> SocketAddr {
    vault.url.trim_start_matches("https://").parse().unwrap()
}

/// A TLS connection to the vault, handshake done; reads time out after 10 s.
fn tls(vault: &Vault) -> Tls {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(addr(vault)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).unwrap();
    }
    s
}

/// Reads one answer: its status and body. Fails (the vault said nothing) on a read timeout or
/// a connection closed before a whole answer. Reads the socket directly: TLS records left
/// unsent by a write the vault cut short are not sent first.
fn answer(s: &mut Tls) -> std::io::Result<(u16, String)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap());
            if got.len() >= end + 4 + length {
                let status = head[9..12].parse().unwrap();
                return Ok((status, String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned()));
            }
        }
        match s.conn.reader().read(&mut buf) {
            Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {got:?}"))),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if s.conn.read_tls(&mut s.sock)? == 0 {
                    return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {got:?}")));
                }
                s.conn.process_new_packets().map_err(std::io::Error::other)?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends a request's head (and `body`) and reads the answer; `within` bounds how long the
/// vault may take. The body may be cut short by the vault's answer.
fn request(vault: &Vault, head: &str, body: &[u8], within: Duration) -> (u16, String) {
    let mut s = tls(vault);
    let start = Instant::now();
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body).and_then(|()| s.flush());
    let a = answer(&mut s).unwrap_or_else(|e| panic!("no answer to {head:?}: {e}"));
    assert!(start.elapsed() < within, "{head:?} answered after {:?}", start.elapsed());
    a
}

fn head(method: &str, path: &str, token: Option<&str>, length: u64) -> String {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n")
}

fn owner(vault: &Vault) -> String {
    std::fs::read_to_string(vault.data("owner.token")).unwrap().trim().to_string()
}

/// A pack's key and bytes whose hash does not match the name: the vault refuses it.
fn bad_pack() -> (String, bytes::Bytes) {
    let id = "ab".repeat(32);
    (format!("data/ab/{id}"), bytes::Bytes::from_static(b"FRYPAK\x01\x00not the bytes the name promises"))
}

#[test]
fn objects_of_machines_that_are_not_registered_are_not_found() {
    use ferry_store::Store;
    let vault = Vault::start();
    let nobody = "0123456789abcdef".repeat(2);
    let s = vault.store(&owner(&vault), &nobody);
    // The owner may write any registered machine's objects, and none of a machine that is not.
    let w = s.put_if_absent("config", bytes::Bytes::from_static(b"{}"));
    assert!(w.as_ref().is_err_and(ferry_store::StoreError::is_not_found), "{w:?}");
    assert!(w.unwrap_err().message.contains(&format!("no machine {nobody}")));
    assert!(s.get("config").unwrap_err().is_not_found());
    assert!(s.head("config").unwrap_err().is_not_found());
    assert!(s.list("").unwrap_err().is_not_found());
    assert!(s.delete("locks/x").unwrap_err().is_not_found());
    let store = std::path::PathBuf::from(vault.data("store"));
    assert!(!store.join("machines").join(&nobody).exists(), "nothing was written");
    // A registered machine's objects are there for the owner.
    let (admin, m) = (machine(), machine());
    vault.register(&admin, &m, "m");
    let id = registration(&m)["machine"].as_str().unwrap().to_string();
    assert!(vault.store(&owner(&vault), &id).get("config").is_ok());
}

#[test]
fn refused_uploads_do_not_count_as_traffic() {
    use ferry_store::Store;
    let vault = Vault::start();
    let (admin, m) = (machine(), machine());
    vault.register(&admin, &m, "m");
    let r = registration(&m);
    let id = r["machine"].as_str().unwrap();
    let traffic = || {
        let list: serde_json::Value = serde_json::from_str(&vault.admin(&admin, &["vault", "machines", "--json"])).unwrap();
        (list[0]["bytes_received"].as_u64().unwrap(), list[0]["objects_received"].as_u64().unwrap())
    };
    let before = traffic();
    assert!(before.1 > 0, "registration wrote the repository: {before:?}");
    let s = vault.store(r["token"].as_str().unwrap(), id);
    let (key, bytes) = bad_pack();
    let e = s.put_if_absent(&key, bytes).unwrap_err();
    assert!(e.message.contains("hash to"), "{e}");
    let e = s.put_if_absent("config", bytes::Bytes::from_static(b"{}")).map(|created| assert!(!created));
    assert!(e.is_ok(), "a config already there is not written again: {e:?}");
    let e = s.put_if_absent("not/an/object", bytes::Bytes::from_static(b"x")).unwrap_err();
    assert!(e.message.contains("not an object"), "{e}");
    assert_eq!(traffic(), (before.0 + 2, before.1 + 1), "only the accepted upload (2 bytes) counts");
}

#[test]
fn the_caller_is_known_before_a_byte_of_an_upload_is_read() {
    let vault = Vault::start();
    let (admin, m) = (machine(), machine());
    vault.register(&admin, &m, "m");
    let r = registration(&m);
    let id = r["machine"].as_str().unwrap();
    let reader = vault.admin(&admin, &["vault", "user", "add", "r", "--role", "reader"]).trim().to_string();
    let pack = format!("/v1/machines/{id}/objects/data/00/{}", "00".repeat(32));
    let fast = Duration::from_secs(3);
    // 200 MB announced, nothing sent: answered at once, without waiting for the body.
    for (token, status, says) in
        [(None, 401, "no token"), (Some("not-a-token"), 401, "unknown, expired or revoked"), (Some(reader.as_str()), 403, "may not")]
    {
        let (got, text) = request(&vault, &head("PUT", &pack, token, 200_000_000), b"", fast);
        assert_eq!(got, status, "{token:?}: {text}");
        assert!(text.contains(says), "{text}");
    }
    let nobody = format!("/v1/machines/{}/objects/config", "ab".repeat(16));
    let (got, text) = request(&vault, &head("PUT", &nobody, Some(&owner(&vault)), 200_000_000), b"", fast);
    assert_eq!(got, 404, "{text}");
    // The vault's own client, in the middle of sending a pack when refused, hears why.
    let pack_bytes = bytes::Bytes::from(noise(8 << 20, 4));
    let e = ferry_store::Store::put_if_absent(&vault.store(&reader, id), &format!("data/00/{}", "00".repeat(32)), pack_bytes).unwrap_err();
    assert!(e.message.contains("may not write"), "{e}");
    // More than the largest object: 413 before the body, even to the machine itself.
    let (got, text) = request(&vault, &head("PUT", &pack, r["token"].as_str(), 300 << 20), b"", fast);
    assert_eq!(got, 413, "{text}");
    assert!(text.contains("larger than this call's limit of 256 MiB"), "{text}");
}

#[test]
fn each_call_takes_a_body_of_its_size_only() {
    let vault = Vault::start();
    let owner = owner(&vault);
    let fast = Duration::from_secs(3);
    // A JSON call announcing 1 MB: 413 before a byte of it is read.
    let (got, text) = request(&vault, &head("POST", "/v1/users", Some(&owner), 1_000_000), b"", fast);
    assert_eq!(got, 413, "{text}");
    let e: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(e["error"].as_str().unwrap().contains("limit of 64 KiB"), "{text}");
    // Registration and the dashboard's login take a few KiB, with no token.
    for path in ["/v1/register", "/login"] {
        let (got, text) = request(&vault, &head("POST", path, None, 10_000), b"", fast);
        assert_eq!(got, 413, "{path}: {text}");
        assert!(text.contains("limit of 4 KiB"), "{text}");
    }
    // A body that does not announce its length is cut at the limit.
    let chunk = vec![b' '; 70_000];
    let chunked = "POST /v1/users HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer TOKEN\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        .replace("TOKEN", &owner);
    let mut body = format!("{:x}\r\n", chunk.len()).into_bytes();
    body.extend_from_slice(&chunk);
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let (got, text) = request(&vault, &chunked, &body, fast);
    assert_eq!(got, 413, "{text}");
    // The vault's own client hears the limit in the error.
    let c = ferry_store::VaultClient::new(&vault.url, &vault.fingerprint(), &owner).unwrap();
    let big = serde_json::json!({"name": "x".repeat(100_000), "role": "reader"});
    let e = c.post_json("/v1/users", &big).unwrap_err();
    assert!(e.message.contains("limit of 64 KiB"), "{e}");
    // Within the limit, the call is answered as before.
    let (got, text) = request(&vault, &head("POST", "/v1/users", Some(&owner), 2), b"{}", fast);
    assert_eq!(got, 422, "{text}");
}

#[test]
fn big_uploads_without_a_token_leave_the_vault_small() {
    let vault = Vault::start();
    let id = "ab".repeat(16);
    let path = format!("/v1/machines/{id}/objects/data/00/{}", "00".repeat(32));
    // Settled after its start: one answered request.
    request(&vault, &head("GET", "/v1/health", None, 0), b"", Duration::from_secs(5));
    let base = vault.peak_rss_kb();
    let len: usize = 120 << 20;
    let attackers: Vec<_> = (0..4)
        .map(|_| {
            let mut s = tls(&vault);
            let head = head("PUT", &path, None, len as u64);
            std::thread::spawn(move || {
                s.write_all(head.as_bytes()).unwrap();
                let chunk = vec![0u8; 64 << 10];
                let mut sent = 0;
                while sent < len && s.write_all(&chunk).and_then(|()| s.flush()).is_ok() {
                    sent += chunk.len();
                }
                (sent, answer(&mut s).map(|a| a.0).ok())
            })
        })
        .collect();
    let outcomes: Vec<_> = attackers.into_iter().map(|a| a.join().unwrap()).collect();
    let peak = vault.peak_rss_kb();
    eprintln!("vault peak RSS {base} KiB before, {peak} KiB after 4 x 120 MiB uploads without a token; {outcomes:?}");
    for (sent, status) in outcomes {
        assert!(sent < len, "the vault took the whole body of an unknown caller");
        // The answer may be lost when the vault closes the connection under the client's
        // writes; when it arrives, it is 401.
        assert!(matches!(status, None | Some(401)), "{status:?}");
    }
    assert!(peak < base + 48 * 1024, "the vault grew from {base} KiB to {peak} KiB under 4 x 120 MiB uploads without a token");
}

#[test]
fn slow_and_silent_clients_are_disconnected() {
    let vault = Vault::start_in(
        tempfile::tempdir().unwrap(),
        &[
            ("FERRY_VAULT_TLS_TIMEOUT_S", "2"),
            ("FERRY_VAULT_HEADER_TIMEOUT_S", "2"),
            ("FERRY_VAULT_IDLE_TIMEOUT_S", "2"),
            ("FERRY_VAULT_MIN_BODY_RATE", "10000"),
            ("FERRY_VAULT_BODY_WINDOW_S", "2"),
        ],
    );
    let closed_within = |read: &mut dyn FnMut() -> std::io::Result<usize>, what: &str| {
        let start = Instant::now();
        let mut buf = 0;
        loop {
            match read() {
                Ok(0) | Err(_) => break,
                Ok(n) => buf += n,
            }
        }
        let took = start.elapsed();
        assert!(took < Duration::from_secs(6), "{what}: the connection stayed open {took:?} ({buf} bytes came)");
    };
    // TCP connected, TLS never started.
    let mut tcp = TcpStream::connect(addr(&vault)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    closed_within(&mut || tcp.read(&mut [0; 64]), "no TLS handshake");
    // Half a header line, then nothing (slowloris).
    let mut s = tls(&vault);
    s.write_all(b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nX-Wait: ").unwrap();
    s.flush().unwrap();
    closed_within(&mut || s.read(&mut [0; 1024]), "half a header");
    // One request answered, then silence.
    let mut s = tls(&vault);
    s.write_all(head("GET", "/v1/health", None, 0).as_bytes()).unwrap();
    assert_eq!(answer(&mut s).unwrap().0, 200);
    closed_within(&mut || s.read(&mut [0; 1024]), "idle after a request");
    // An upload that stops: 408 once a window brought less than the minimum.
    let (admin, m) = (machine(), machine());
    vault.register(&admin, &m, "m");
    let r = registration(&m);
    let pack = format!("/v1/machines/{}/objects/data/00/{}", r["machine"].as_str().unwrap(), "00".repeat(32));
    let (got, text) = request(&vault, &head("PUT", &pack, r["token"].as_str(), 1 << 20), &[0; 1000], Duration::from_secs(6));
    assert_eq!(got, 408, "{text}");
    assert!(text.contains("slower than 10000 bytes/s"), "{text}");
    // Clients that keep up are not disturbed by the short limits: a backup and a restore.
    let src = m.path("src");
    make_tree(&src);
    std::fs::write(src.join("big.bin"), noise(24 << 20, 3)).unwrap();
    m.backup(&src);
    std::thread::sleep(Duration::from_secs(3));
    let target = m.path("r");
    m.ok(&["restore", "latest", "--target", target.to_str().unwrap()]);
    assert_same_tree(&src, &restored(&target, &src));
}

/// A TCP connection from `from` (any 127.0.0.0/8 address) to the vault.
fn connect_from(from: &str, vault: &Vault) -> TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
        socket.connect(addr(vault)).await.unwrap()
    });
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s
}

/// Whether the vault closed `s` (at once) rather than keeping it open for a handshake.
fn closed(s: &mut TcpStream) -> bool {
    match s.read(&mut [0; 16]) {
        Ok(0) => true,
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        Ok(_) => false,
    }
}

#[test]
fn connections_are_capped_in_all_and_per_client_address() {
    // The caps as `--max-connections 3 --max-connections-per-ip 2` set them.
    let vault =
        Vault::start_in(tempfile::tempdir().unwrap(), &[("FERRY_VAULT_MAX_CONNECTIONS", "3"), ("FERRY_VAULT_MAX_CONNECTIONS_PER_IP", "2")]);
    // From 127.0.0.4: Vault::start's own probe connections (from 127.0.0.1) may not have been
    // closed yet; checking that a1 and a2 are kept gives them the time.
    let mut a1 = connect_from("127.0.0.4", &vault);
    let mut a2 = connect_from("127.0.0.4", &vault);
    assert!(!closed(&mut a1) && !closed(&mut a2), "within the caps and kept");
    let mut a3 = connect_from("127.0.0.4", &vault);
    assert!(closed(&mut a3), "a third connection from one address");
    let mut b1 = connect_from("127.0.0.2", &vault);
    let mut c1 = connect_from("127.0.0.3", &vault);
    assert!(closed(&mut c1), "a fourth connection in all");
    for (s, who) in [(&mut a1, "a1"), (&mut a2, "a2"), (&mut b1, "b1")] {
        assert!(!closed(s), "{who} is within the caps and kept");
    }
    assert!(vault.log().contains("refused"), "refusals are logged: {}", vault.log());
    // Places given back are free again.
    drop((a1, a2, b1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while closed(&mut connect_from("127.0.0.4", &vault)) {
        assert!(Instant::now() < deadline, "the places were not given back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
