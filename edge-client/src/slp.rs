//! Minecraft Java Edition Server List Ping (docs/edge-apis.md §4): handshake (protocol
//! -1, next state 1), status request, JSON status response. The protocol's last leg, ping/pong,
//! only measures latency, so a probe closes after the status answer (one round trip less; a
//! server takes the close like any client's).
//! Framing: `VarInt length` + `VarInt packetId` + data.

use crate::error::{Backend, EdgeError, record};
use model::ErrorClass;
use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BACKEND: Backend = Backend::Slp;
/// The metrics' `operation` of a Server List Ping.
const PING_OPERATION: &str = "ping";
/// Status JSON is at most 32767 characters (×4 bytes in UTF-8) plus framing.
pub(crate) const MAX_PACKET: usize = 32767 * 4 + 16;
/// "Any version" when probing.
pub const PROBE_PROTOCOL: i32 = -1;
pub(crate) const STATE_STATUS: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlpStatus {
    pub version_name: String,
    pub protocol: i32,
    pub players_online: u32,
    pub players_max: u32,
    /// The names in `players.sample` (servers may list none, or a few of those online).
    pub players_sample: Vec<String>,
    /// The MOTD as plain text (text components flattened, `§` codes kept as sent).
    pub description: String,
}

pub(crate) fn write_varint(buf: &mut Vec<u8>, v: i32) {
    let mut v = v as u32;
    loop {
        if v & !0x7F == 0 {
            buf.push(v as u8);
            return;
        }
        buf.push((v as u8 & 0x7F) | 0x80);
        v >>= 7;
    }
}

pub(crate) fn write_string(buf: &mut Vec<u8>, s: &str) {
    write_varint(buf, s.len() as i32);
    buf.extend_from_slice(s.as_bytes());
}

pub(crate) async fn read_varint<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<i32> {
    let mut out: u32 = 0;
    for i in 0..5 {
        let b = r.read_u8().await?;
        out |= ((b & 0x7F) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(out as i32);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "VarInt too long",
    ))
}

/// Decode a VarInt from the front of a slice: (value, bytes used).
pub(crate) fn varint_from(buf: &[u8]) -> Option<(i32, usize)> {
    let mut out: u32 = 0;
    for (i, b) in buf.iter().take(5).enumerate() {
        out |= ((b & 0x7F) as u32) << (7 * i);
        if b & 0x80 == 0 {
            return Some((out as i32, i + 1));
        }
    }
    None
}

/// Append one packet to `out`: length-prefixed (id + data).
fn frame(out: &mut Vec<u8>, id: i32, data: &[u8]) {
    let mut body = Vec::with_capacity(data.len() + 5);
    write_varint(&mut body, id);
    body.extend_from_slice(data);
    write_varint(out, body.len() as i32);
    out.extend_from_slice(&body);
}

/// Write one packet (the simulated server's side).
#[cfg(feature = "sim")]
pub(crate) async fn write_packet<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    id: i32,
    data: &[u8],
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(data.len() + 10);
    frame(&mut out, id, data);
    w.write_all(&out).await?;
    w.flush().await
}

/// Read one packet: (id, data).
pub(crate) async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
) -> std::io::Result<(i32, Vec<u8>)> {
    let len = read_varint(r).await?;
    if len <= 0 || len as usize > MAX_PACKET {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad packet length {len}"),
        ));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).await?;
    let (id, n) = varint_from(&body)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad packet id"))?;
    Ok((id, body[n..].to_vec()))
}

/// Handshake packet data (id 0x00).
pub(crate) fn handshake(
    protocol: i32,
    server_address: &str,
    port: u16,
    next_state: i32,
) -> Vec<u8> {
    let mut d = Vec::new();
    write_varint(&mut d, protocol);
    write_string(&mut d, server_address);
    d.extend_from_slice(&port.to_be_bytes());
    write_varint(&mut d, next_state);
    d
}

#[derive(Debug, Deserialize)]
struct StatusJson {
    #[serde(default)]
    version: Option<VersionJson>,
    #[serde(default)]
    players: Option<PlayersJson>,
    #[serde(default)]
    description: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct VersionJson {
    #[serde(default)]
    name: String,
    #[serde(default)]
    protocol: i32,
}

#[derive(Debug, Deserialize)]
struct PlayersJson {
    #[serde(default)]
    max: u32,
    #[serde(default)]
    online: u32,
    /// Entries `{"name", "id"}`, read leniently: an odd entry is skipped, not an error.
    #[serde(default)]
    sample: Option<serde_json::Value>,
}

/// Sample names the status lists (at most `MAX_SAMPLE`; vanilla sends 12).
const MAX_SAMPLE: usize = 12;

fn sample_names(v: Option<&serde_json::Value>) -> Vec<String> {
    let Some(serde_json::Value::Array(a)) = v else {
        return vec![];
    };
    a.iter()
        .filter_map(|e| e.get("name")?.as_str())
        .take(MAX_SAMPLE)
        .map(str::to_string)
        .collect()
}

/// Flatten a chat component: a string, `{"text":..,"extra":[..]}`, or an array.
pub fn flatten_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a.iter().map(flatten_text).collect(),
        serde_json::Value::Object(o) => {
            let mut s = o
                .get("text")
                .and_then(|t| t.as_str())
                .unwrap_or_default()
                .to_string();
            if let Some(extra) = o.get("extra") {
                s.push_str(&flatten_text(extra));
            }
            s
        }
        _ => String::new(),
    }
}

pub(crate) fn parse_status(json: &str) -> Result<SlpStatus, String> {
    let s: StatusJson = serde_json::from_str(json).map_err(|e| format!("status JSON: {e}"))?;
    let (version_name, protocol) = s.version.map(|v| (v.name, v.protocol)).unwrap_or_default();
    let (players_max, players_online, players_sample) = s
        .players
        .map(|p| (p.max, p.online, sample_names(p.sample.as_ref())))
        .unwrap_or_default();
    Ok(SlpStatus {
        version_name,
        protocol,
        players_online,
        players_max,
        players_sample,
        description: s.description.as_ref().map(flatten_text).unwrap_or_default(),
    })
}

fn malformed(m: impl Into<String>) -> EdgeError {
    // A server that answers garbage is most likely still starting (or not Minecraft yet):
    // unknown, so retry later rather than failing the server.
    EdgeError::new(
        BACKEND,
        ErrorClass::Transient,
        None,
        format!("malformed SLP response: {}", m.into()),
    )
}

async fn exchange(addr: SocketAddr, server_address: &str) -> Result<SlpStatus, EdgeError> {
    let io = |what: &str, e: std::io::Error| {
        EdgeError::new(BACKEND, ErrorClass::Transient, None, format!("{what}: {e}"))
    };
    let mut s = TcpStream::connect(addr)
        .await
        .map_err(|e| io(crate::error::MSG_CONNECT, e))?;
    let _ = s.set_nodelay(true);
    // Handshake and status request in one write: one segment, and the server frames them.
    let mut out = Vec::with_capacity(server_address.len() + 16);
    frame(
        &mut out,
        0x00,
        &handshake(PROBE_PROTOCOL, server_address, addr.port(), STATE_STATUS),
    );
    frame(&mut out, 0x00, &[]);
    s.write_all(&out)
        .await
        .map_err(|e| io("status request", e))?;
    // Buffered: the length VarInt is read a byte at a time.
    let (id, data) = read_packet(&mut tokio::io::BufReader::new(&mut s))
        .await
        .map_err(|e| io("status response", e))?;
    if id != 0x00 {
        return Err(malformed(format!("unexpected packet id {id:#x}")));
    }
    let (len, n) = varint_from(&data).ok_or_else(|| malformed("bad string length"))?;
    let json = data
        .get(n..n + len.max(0) as usize)
        .ok_or_else(|| malformed("truncated status string"))?;
    let json = std::str::from_utf8(json).map_err(|_| malformed("status is not UTF-8"))?;
    let status = parse_status(json).map_err(malformed)?;
    Ok(status)
}

/// Ping a Java Edition server. `server_address` is the host name sent in the handshake (proxies
/// route on it). Every failure is `Transient` (refused, reset, timeout, malformed answer).
pub async fn ping(
    addr: SocketAddr,
    server_address: &str,
    timeout: Duration,
) -> Result<SlpStatus, EdgeError> {
    let started = std::time::Instant::now();
    let r = match tokio::time::timeout(timeout, exchange(addr, server_address)).await {
        Ok(r) => r,
        Err(_) => Err(EdgeError::new(
            BACKEND,
            ErrorClass::Transient,
            None,
            crate::error::MSG_TIMEOUT,
        )),
    };
    metrics::histogram!(model::metrics::BACKEND_REQUEST_DURATION, "backend" => BACKEND.as_str(), "operation" => PING_OPERATION)
        .record(started.elapsed().as_secs_f64());
    record(BACKEND, PING_OPERATION, &r);
    if let Err(e) = &r {
        tracing::debug!(backend = "slp", %addr, error = %e, "server list ping failed");
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_table() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (25565, &[0xdd, 0xc7, 0x01]),
            (2097151, &[0xff, 0xff, 0x7f]),
            (-1, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for (v, bytes) in cases {
            let mut b = Vec::new();
            write_varint(&mut b, *v);
            assert_eq!(b.as_slice(), *bytes, "{v}");
            assert_eq!(varint_from(bytes), Some((*v, bytes.len())));
        }
    }

    /// The players part is kept with its sample names; odd sample entries are skipped, and a
    /// status without players reads as none online.
    #[test]
    fn players_and_their_sample() {
        let json = r#"{"players":{"max":20,"online":3,"sample":[{"name":"alex","id":"x"},{"id":"no-name"},7,{"name":"steve"}]}}"#;
        let s = parse_status(json).unwrap();
        assert_eq!((s.players_online, s.players_max), (3, 20));
        assert_eq!(s.players_sample, vec!["alex", "steve"]);
        let s = parse_status(r#"{"players":{"max":5,"online":0,"sample":"odd"}}"#).unwrap();
        assert!(s.players_sample.is_empty(), "a non-array sample is none");
        assert_eq!(parse_status("{}").unwrap().players_online, 0);
    }

    #[test]
    fn description_shapes() {
        let cases = [
            (r#"{"description":"plain"}"#, "plain"),
            (
                r#"{"description":{"text":"a","extra":[{"text":"b"},"c"]}}"#,
                "abc",
            ),
            (r#"{"description":[{"text":"x"},{"text":"y"}]}"#, "xy"),
            (r#"{}"#, ""),
        ];
        for (json, want) in cases {
            assert_eq!(parse_status(json).unwrap().description, want, "{json}");
        }
    }
}
