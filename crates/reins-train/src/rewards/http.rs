//! A remote scorer as a [`RewardSource`]: one `POST` per scoring call with
//! `{"prompts": [...], "completions": [...]}` and a reply `{"scores": [...]}`, one number per
//! completion, in order. Prompts and completions are sent as text when a decoder is given
//! (the usual case: the CLI passes the tokenizer), else as arrays of token ids.
//!
//! The client is a few lines of HTTP/1.1 over `std::net` (`Connection: close`, `Content-Length`
//! or chunked replies), so the training crate pulls in no web stack. Plain `http://` only: put
//! a TLS-terminating proxy in front of an `https://` service. Every failure — refused
//! connection, timeout, non-200 status, malformed JSON, wrong number of scores — is a
//! [`TrainError::Reward`] naming the URL.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::{json, Value};

use super::{check_rows, RewardSource};
use crate::{Result, TrainError};

/// Token ids to text, for sources that score text.
pub type Decode = dyn Fn(&[u32]) -> String + Send + Sync;

/// A plain-`http://` endpoint: `http://host[:port][/path]`, a timeout for the connection and
/// each read and write, and errors that name the URL (`what` says whose: a reward, a server).
#[derive(Clone)]
pub struct HttpEndpoint {
    url: String,
    host: String,
    port: u16,
    path: String,
    timeout: Duration,
    what: &'static str,
}

impl HttpEndpoint {
    pub fn new(url: &str, timeout: Duration, what: &'static str) -> Result<Self> {
        let bad = |why: &str| TrainError::Config(format!("{what} url `{url}`: {why}"));
        let rest = match url.strip_prefix("http://") {
            Some(r) => r,
            None if url.starts_with("https://") => {
                return Err(bad("https is not supported; run the service on plain http (e.g. behind a local proxy)"))
            }
            None => return Err(bad("expected http://host[:port]/path")),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad("the port is not a number"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if timeout.is_zero() {
            return Err(bad("the timeout must be positive"));
        }
        Ok(HttpEndpoint { url: url.to_string(), host: host.to_string(), port, path, timeout, what })
    }

    /// The same server with an empty path (`http://host:port` of `http://host:port/v1`).
    pub fn root(&self) -> HttpEndpoint {
        HttpEndpoint { path: String::new(), ..self.clone() }
    }

    /// An error naming this endpoint.
    pub fn err(&self, why: impl std::fmt::Display) -> TrainError {
        TrainError::Reward(format!("{} {}: {why}", self.what, self.url))
    }

    /// Sends a JSON `body` to the URL's path followed by `suffix` (e.g. `/completions` after
    /// `http://host/v1`) and returns the reply's status and body.
    pub fn post(&self, suffix: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| self.err(format!("cannot resolve the host: {e}")))?
            .next()
            .ok_or_else(|| self.err("the host resolves to no address"))?;
        let io = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                self.err(format!("no reply within the {:?} timeout", self.timeout))
            }
            _ => self.err(e),
        };
        let mut s = TcpStream::connect_timeout(&addr, self.timeout).map_err(io)?;
        s.set_read_timeout(Some(self.timeout)).map_err(io)?;
        s.set_write_timeout(Some(self.timeout)).map_err(io)?;
        let path = format!("{}{suffix}", self.path.trim_end_matches('/')).replace("//", "/");
        let path = if path.is_empty() { "/".to_string() } else { path };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nAccept: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.host,
            self.port,
            body.len()
        );
        s.write_all(head.as_bytes()).map_err(io)?;
        s.write_all(body).map_err(io)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(io)?;
        parse_response(&raw).map_err(|why| self.err(why))
    }

    /// POSTs `body` and parses a 200 reply as JSON; any other status is an error with the
    /// start of the reply.
    pub fn post_json(&self, suffix: &str, body: &Value) -> Result<Value> {
        let (status, reply) = self.post(suffix, body.to_string().as_bytes())?;
        let text = String::from_utf8_lossy(&reply);
        let snippet: String = text.chars().take(200).collect();
        if status != 200 {
            return Err(self.err(format!("HTTP {status}: {snippet}")));
        }
        serde_json::from_str(&text).map_err(|e| self.err(format!("the reply is not JSON ({e}): {snippet}")))
    }
}

/// Scores completions by POSTing them to `url`.
pub struct HttpReward {
    endpoint: HttpEndpoint,
    decode: Option<Box<Decode>>,
}

impl HttpReward {
    /// `url` is `http://host[:port][/path]`; `timeout` bounds the connection and each read and
    /// write. `decode` turns token ids into text; `None` sends the ids.
    pub fn new(url: &str, timeout: Duration, decode: Option<Box<Decode>>) -> Result<Self> {
        Ok(HttpReward { endpoint: HttpEndpoint::new(url, timeout, "reward")?, decode })
    }
}

/// Splits an HTTP/1.1 response into status and body (`Content-Length`, chunked, or to EOF).
fn parse_response(raw: &[u8]) -> std::result::Result<(u16, Vec<u8>), String> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or("the reply is not an HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line `{status_line}`"))?;
    let (mut length, mut chunked) = (None, false);
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                length = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or("the reply ended before its Content-Length")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut b: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").ok_or("bad chunked encoding")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size `{size_text}`"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).ok_or("the reply ended inside a chunk")?);
        b = b.get(size + 2..).ok_or("the reply ended inside a chunk")?;
    }
}

impl RewardSource for HttpReward {
    fn score(&self, prompts: &[Vec<u32>], completions: &[Vec<u32>]) -> Result<Vec<f32>> {
        check_rows(prompts, completions)?;
        let enc = |rows: &[Vec<u32>]| -> Value {
            match &self.decode {
                Some(d) => json!(rows.iter().map(|r| d(r)).collect::<Vec<_>>()),
                None => json!(rows),
            }
        };
        let e = &self.endpoint;
        let v = e.post_json("", &json!({"prompts": enc(prompts), "completions": enc(completions)}))?;
        let snippet: String = v.to_string().chars().take(200).collect();
        let scores = v
            .get("scores")
            .and_then(Value::as_array)
            .ok_or_else(|| e.err(format!("the reply has no `scores` array: {snippet}")))?;
        if scores.len() != completions.len() {
            return Err(e.err(format!("{} scores for {} completions", scores.len(), completions.len())));
        }
        scores
            .iter()
            .enumerate()
            .map(|(i, s)| {
                s.as_f64().map(|x| x as f32).ok_or_else(|| e.err(format!("scores[{i}] = {s} is not a number")))
            })
            .collect()
    }

    fn name(&self) -> &str {
        "http"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let t = Duration::from_secs(1);
        let h = HttpReward::new("http://127.0.0.1:9000/score", t, None).unwrap().endpoint;
        assert_eq!((h.host.as_str(), h.port, h.path.as_str()), ("127.0.0.1", 9000, "/score"));
        let h = HttpReward::new("http://scorer", t, None).unwrap().endpoint;
        assert_eq!((h.port, h.path.as_str()), (80, "/"));
        for bad in ["https://x/score", "ftp://x", "http://:80/", "http://x:port/"] {
            assert!(HttpReward::new(bad, t, None).is_err(), "{bad}");
        }
        assert!(HttpReward::new("http://x/", Duration::ZERO, None).is_err());
    }

    #[test]
    fn responses_parse_by_length_and_chunks() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcdEXTRA";
        assert_eq!(parse_response(r).unwrap(), (200, b"abcd".to_vec()));
        let r = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(r).unwrap(), (200, b"abcde".to_vec()));
        assert_eq!(parse_response(b"HTTP/1.0 503 Busy\r\n\r\nlater").unwrap(), (503, b"later".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").is_err());
    }
}
