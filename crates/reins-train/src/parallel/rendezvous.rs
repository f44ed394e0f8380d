//! How the ranks of a torchrun-style launch find each other without MPI: the launcher's
//! variables name the world ([`Launch`]), rank 0 listens on the master port and hands every
//! other rank one byte string over TCP (NCCL's 128-byte unique id), and each rank then builds
//! its communicator from it (`nccl_world`).
//!
//! Nothing here needs CUDA, so this half of the NCCL launch is tested on any machine.
//!
//! The exchange, one connection per rank `r` ≥ 1, integers little-endian `u32`:
//! - rank `r` → rank 0: [`MAGIC`], `r`, the world size;
//! - rank 0 → rank `r`: [`MAGIC`], a status byte, a length and that many bytes: the payload
//!   (status 0), or why rank 0 refused this rank (status 1).
//!
//! Rank 0 checks that every rank names its world size and that no rank comes twice, so a
//! mis-set launch stops at start-up with the ranks named, not in the first all-reduce.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::{Result, TrainError};

/// The first bytes of both messages: something else answering on the port is not mistaken
/// for rank 0.
pub const MAGIC: &[u8; 8] = b"reins-rv";

/// How long the ranks wait for each other at start-up: rank 0 for every other rank to fetch
/// the id, the others for rank 0 to listen (ranks may start minutes apart on a busy cluster).
pub const TIMEOUT: Duration = Duration::from_secs(300);

/// Where this process stands in a torchrun-style launch (`torchrun --nproc-per-node N
/// --no-python reins …`, or any launcher that sets the same variables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// `RANK`: this process's rank, `0..world_size`.
    pub rank: usize,
    /// `WORLD_SIZE`: how many processes train together, more than one.
    pub world_size: usize,
    /// `LOCAL_RANK` (default 0): which GPU of this machine the rank uses.
    pub local_rank: usize,
    /// `MASTER_ADDR`: the host of rank 0, as the other ranks reach it.
    pub master_addr: String,
    /// The rendezvous port: `MASTER_PORT`, or `MASTER_PORT + 1` when torchrun's agent serves
    /// its own store on `MASTER_PORT` (it sets `TORCHELASTIC_USE_AGENT_STORE=True` then).
    pub port: u16,
}

impl Launch {
    /// The launch the environment describes; `None` without `WORLD_SIZE`, or with
    /// `WORLD_SIZE=1` unless `RANK`, `MASTER_ADDR` and `MASTER_PORT` are set too (as
    /// `torchrun --nproc-per-node 1` sets them: a world of one rank, which checks NCCL on one GPU).
    pub fn from_env() -> Result<Option<Launch>> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`Launch::from_env`] reading the variables through `var`. A missing or unparsable
    /// variable, or a `RANK` outside the world, is an error that names it.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<Launch>> {
        let number = |key: &str| -> Result<Option<usize>> {
            match var(key) {
                None => Ok(None),
                Some(v) => v.trim().parse::<usize>().map(Some).map_err(|_| {
                    TrainError::Config(format!(
                        "{key}={v:?} is not a whole number; hint: the launcher (torchrun) sets {key} to one, \
                         or unset it to run one process"
                    ))
                }),
            }
        };
        let required = |key: &str, what: &str| -> Result<String> {
            var(key).filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                TrainError::Config(format!(
                    "WORLD_SIZE > 1 is set (a torchrun-style launch) but {key} is not; hint: set {key} to {what} \
                     (torchrun sets RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT), or unset WORLD_SIZE to run one process"
                ))
            })
        };
        let one_rank_launch = ["RANK", "MASTER_ADDR", "MASTER_PORT"].iter().all(|k| var(k).is_some());
        let world_size = match number("WORLD_SIZE")? {
            None => return Ok(None),
            Some(1) if !one_rank_launch => return Ok(None),
            Some(0) => {
                return Err(TrainError::Config(
                    "WORLD_SIZE=0: a world needs at least one process; hint: set it to the number of processes, or unset it"
                        .into(),
                ))
            }
            Some(n) if n > i32::MAX as usize => {
                return Err(TrainError::Config(format!("WORLD_SIZE={n} is more processes than NCCL can join")))
            }
            Some(n) => n,
        };
        required("RANK", "this process's rank, 0 to WORLD_SIZE - 1")?;
        let rank = number("RANK")?.unwrap_or_default();
        if rank >= world_size {
            return Err(TrainError::Config(format!(
                "RANK={rank} is outside a world of WORLD_SIZE={world_size} processes; hint: ranks run from 0 to {}",
                world_size - 1
            )));
        }
        let local_rank = number("LOCAL_RANK")?.unwrap_or(0);
        let master_addr = required("MASTER_ADDR", "the host name or address of rank 0")?.trim().to_string();
        let master_port = required("MASTER_PORT", "a free TCP port on rank 0's host")?;
        let master_port = master_port.trim().parse::<u16>().map_err(|_| {
            TrainError::Config(format!(
                "MASTER_PORT={master_port:?} is not a TCP port; hint: use a free port, 1024 to 65534"
            ))
        })?;
        let agent_store = var("TORCHELASTIC_USE_AGENT_STORE").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let port = if agent_store {
            master_port.checked_add(1).ok_or_else(|| {
                TrainError::Config(
                    "MASTER_PORT=65535: under torchrun reins' rendezvous uses MASTER_PORT + 1; hint: pick a lower --master-port"
                        .into(),
                )
            })?
        } else {
            master_port
        };
        Ok(Some(Launch { rank, world_size, local_rank, master_addr, port }))
    }

    /// `MASTER_ADDR:port`, with an IPv6 address in brackets.
    pub fn address(&self) -> String {
        if self.master_addr.contains(':') && !self.master_addr.starts_with('[') {
            format!("[{}]:{}", self.master_addr, self.port)
        } else {
            format!("{}:{}", self.master_addr, self.port)
        }
    }
}

fn parallel_error(message: String, source: Option<std::io::Error>) -> TrainError {
    TrainError::Parallel { message, source }
}

/// Rank 0's listener: the rendezvous port on every IPv4 interface (the others reach it as
/// `MASTER_ADDR`).
pub fn listen(port: u16) -> Result<TcpListener> {
    TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        parallel_error(
            format!(
                "rank 0 cannot listen on port {port} for the other ranks; hint: pick a free MASTER_PORT \
                 (under torchrun reins uses --master-port + 1, as torchrun itself holds --master-port)"
            ),
            Some(e),
        )
    })
}

/// Rank 0: hands `payload` to each of the other `world_size - 1` ranks as they connect to
/// `listener`, waiting at most `timeout` for all of them.
pub fn serve(listener: &TcpListener, payload: &[u8], world_size: usize, timeout: Duration) -> Result<()> {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
    let io = |what: &str, e: std::io::Error| parallel_error(format!("rank 0, port {port}: {what}"), Some(e));
    let deadline = Instant::now() + timeout;
    let mut served = vec![false; world_size];
    served[0] = true;
    listener.set_nonblocking(true).map_err(|e| io("setting up the listener", e))?;
    while served.iter().any(|s| !s) {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    let missing: Vec<usize> = (0..world_size).filter(|&r| !served[r]).collect();
                    return Err(parallel_error(
                        format!(
                            "rank 0 waited {} s on port {port}, and ranks {missing:?} of WORLD_SIZE={world_size} did not \
                             connect; hint: check that they were started, with MASTER_ADDR naming this machine and the \
                             same MASTER_PORT",
                            timeout.as_secs()
                        ),
                        None,
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(e) => return Err(io("accepting a rank", e)),
        };
        let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        stream.set_nonblocking(false).map_err(|e| io("accepting a rank", e))?;
        stream.set_read_timeout(Some(left.min(Duration::from_secs(10)))).map_err(|e| io("accepting a rank", e))?;
        stream.set_write_timeout(Some(left.min(Duration::from_secs(10)))).map_err(|e| io("accepting a rank", e))?;
        let mut hello = [0u8; 16];
        if stream.read_exact(&mut hello).is_err() || &hello[..8] != MAGIC {
            // Not a reins rank (a port scan, a health check): not ours to answer.
            continue;
        }
        let rank = u32::from_le_bytes([hello[8], hello[9], hello[10], hello[11]]) as usize;
        let their_size = u32::from_le_bytes([hello[12], hello[13], hello[14], hello[15]]) as usize;
        let refusal = if their_size != world_size {
            Some(format!(
                "rank {rank} (from {peer}) was started with WORLD_SIZE={their_size}, rank 0 with WORLD_SIZE={world_size}; \
                 hint: start every rank with the same WORLD_SIZE"
            ))
        } else if rank == 0 || rank >= world_size {
            Some(format!(
                "a process at {peer} says it is rank {rank}; hint: the other ranks run from 1 to {}",
                world_size - 1
            ))
        } else if served[rank] {
            Some(format!("two processes say they are RANK={rank}; hint: give every process its own RANK"))
        } else {
            None
        };
        let (status, body) = match &refusal {
            Some(why) => (1u8, why.as_bytes()),
            None => (0u8, payload),
        };
        let mut reply = Vec::with_capacity(13 + body.len());
        reply.extend_from_slice(MAGIC);
        reply.push(status);
        reply.extend_from_slice(&(body.len() as u32).to_le_bytes());
        reply.extend_from_slice(body);
        // A rank that cannot be answered will report its own error; rank 0 reports the refusal.
        let sent = stream.write_all(&reply).and_then(|_| stream.flush());
        if let Some(why) = refusal {
            return Err(parallel_error(why, None));
        }
        sent.map_err(|e| io(&format!("sending the id to rank {rank} at {peer}"), e))?;
        served[rank] = true;
    }
    Ok(())
}

/// Rank `rank` ≥ 1 of `world_size`: connects to rank 0 at `address` (`host:port`), retrying
/// until `timeout` since rank 0 may start later, and returns the payload rank 0 serves.
pub fn fetch(address: &str, rank: usize, world_size: usize, timeout: Duration) -> Result<Vec<u8>> {
    if rank == 0 || rank >= world_size {
        return Err(TrainError::Config(format!(
            "rank {rank} of {world_size} cannot fetch the id: only ranks 1 to {} do",
            world_size.saturating_sub(1)
        )));
    }
    let deadline = Instant::now() + timeout;
    let mut last: Option<std::io::Error> = None;
    let mut pause = Duration::from_millis(50);
    let mut stream = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(parallel_error(
                format!(
                    "rank {rank} could not reach rank 0 at {address} (MASTER_ADDR and the rendezvous port) in {} s; \
                     hint: check that rank 0 is running and that this machine can reach {address}",
                    timeout.as_secs_f64()
                ),
                last,
            ));
        }
        match connect(address, left) {
            Ok(s) => break s,
            Err(e) => last = Some(e),
        }
        std::thread::sleep(pause.min(deadline.saturating_duration_since(Instant::now())));
        pause = (pause * 2).min(Duration::from_secs(1));
    };
    let io = |what: &str, e: std::io::Error| {
        parallel_error(format!("rank {rank}: {what} rank 0 at {address}; hint: see rank 0's error"), Some(e))
    };
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    stream.set_read_timeout(Some(left)).map_err(|e| io("talking to", e))?;
    stream.set_write_timeout(Some(left)).map_err(|e| io("talking to", e))?;
    let mut hello = Vec::with_capacity(16);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&(rank as u32).to_le_bytes());
    hello.extend_from_slice(&(world_size as u32).to_le_bytes());
    stream.write_all(&hello).map_err(|e| io("writing to", e))?;
    let mut head = [0u8; 13];
    stream.read_exact(&mut head).map_err(|e| io("reading the id from", e))?;
    if &head[..8] != MAGIC {
        return Err(parallel_error(
            format!(
                "rank {rank}: {address} answered, but not as reins' rank 0; hint: another program may hold the port, \
                 pick another MASTER_PORT"
            ),
            None,
        ));
    }
    let len = u32::from_le_bytes([head[9], head[10], head[11], head[12]]) as usize;
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(|e| io("reading the id from", e))?;
    if head[8] != 0 {
        return Err(parallel_error(format!("rank 0 refused rank {rank}: {}", String::from_utf8_lossy(&body)), None));
    }
    Ok(body)
}

/// One connection attempt to any of `address`'s resolved addresses.
fn connect(address: &str, left: Duration) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = address.to_socket_addrs()?.collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, format!("{address} resolves to no address"));
    for a in addrs {
        match TcpStream::connect_timeout(&a, left.min(Duration::from_secs(5))) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn launch(vars: &[(&str, &str)]) -> Result<Option<Launch>> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_vars(|k| vars.get(k).cloned())
    }

    fn torchrun(rank: &str, world: &str) -> Vec<(&'static str, String)> {
        vec![
            ("RANK", rank.to_string()),
            ("WORLD_SIZE", world.to_string()),
            ("LOCAL_RANK", rank.to_string()),
            ("MASTER_ADDR", "127.0.0.1".into()),
            ("MASTER_PORT", "29500".into()),
        ]
    }

    fn with(vars: &[(&'static str, String)]) -> Result<Option<Launch>> {
        let v: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        launch(&v)
    }

    #[test]
    fn the_launchers_variables_name_the_world() -> Result<()> {
        assert_eq!(launch(&[])?, None);
        assert_eq!(launch(&[("WORLD_SIZE", "1"), ("RANK", "0")])?, None);
        assert_eq!(with(&torchrun("0", "1"))?.map(|l| l.world_size), Some(1));
        let l = with(&torchrun("1", "2"))?.expect("a world of two");
        assert_eq!(l, Launch { rank: 1, world_size: 2, local_rank: 1, master_addr: "127.0.0.1".into(), port: 29500 });
        assert_eq!(l.address(), "127.0.0.1:29500");
        // torchrun's agent holds MASTER_PORT: the rendezvous takes the next port.
        let mut v = torchrun("0", "2");
        v.push(("TORCHELASTIC_USE_AGENT_STORE", "True".into()));
        assert_eq!(with(&v)?.map(|l| l.port), Some(29501));
        // LOCAL_RANK defaults to 0; IPv6 addresses get brackets.
        let v: Vec<_> = torchrun("0", "2")
            .into_iter()
            .filter(|(k, _)| *k != "LOCAL_RANK")
            .map(|(k, v)| if k == "MASTER_ADDR" { (k, "::1".to_string()) } else { (k, v) })
            .collect();
        let l = with(&v)?.expect("a world of two");
        assert_eq!((l.local_rank, l.address()), (0, "[::1]:29500".to_string()));
        Ok(())
    }

    #[test]
    fn a_wrong_launch_is_an_error_that_names_the_variable() {
        let err = |vars: Vec<(&'static str, String)>| with(&vars).unwrap_err().to_string();
        let e = err(torchrun("2", "2"));
        assert!(e.contains("RANK=2") && e.contains("WORLD_SIZE=2") && e.contains("0 to 1"), "{e}");
        let e = err(torchrun("one", "2"));
        assert!(e.contains("RANK=\"one\"") && e.contains("whole number"), "{e}");
        let e = err(torchrun("0", "two"));
        assert!(e.contains("WORLD_SIZE=\"two\""), "{e}");
        let e = err(torchrun("0", "0"));
        assert!(e.contains("WORLD_SIZE=0"), "{e}");
        let e = err(torchrun("0", "2").into_iter().filter(|(k, _)| *k != "MASTER_ADDR").collect());
        assert!(e.contains("MASTER_ADDR is not"), "{e}");
        let e = err(torchrun("0", "2").into_iter().filter(|(k, _)| *k != "RANK").collect());
        assert!(e.contains("RANK is not"), "{e}");
        let e = err(torchrun("0", "2")
            .into_iter()
            .map(|(k, v)| if k == "MASTER_PORT" { (k, "70000".to_string()) } else { (k, v) })
            .collect());
        assert!(e.contains("MASTER_PORT=\"70000\""), "{e}");
    }

    #[test]
    fn rank_0_hands_the_id_to_every_other_rank() -> Result<()> {
        let id: Vec<u8> = (0..128u8).map(|b| b.wrapping_mul(37)).collect();
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| parallel_error("bind".into(), Some(e)))?;
        let address = listener.local_addr().map_err(|e| parallel_error("addr".into(), Some(e)))?.to_string();
        let clients: Vec<_> = (1..3)
            .map(|rank| {
                let address = address.clone();
                std::thread::spawn(move || fetch(&address, rank, 3, Duration::from_secs(20)))
            })
            .collect();
        serve(&listener, &id, 3, Duration::from_secs(20))?;
        for c in clients {
            assert_eq!(c.join().expect("the client thread")?, id);
        }
        Ok(())
    }

    #[test]
    fn a_rank_started_before_rank_0_waits_for_it() -> Result<()> {
        // Find a free port, then let rank 0 listen on it only after the client has started.
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.map_err(|e| parallel_error("bind".into(), Some(e)))?;
        let client = std::thread::spawn(move || fetch(&format!("127.0.0.1:{port}"), 1, 2, Duration::from_secs(20)));
        std::thread::sleep(Duration::from_millis(300));
        let listener = TcpListener::bind(("127.0.0.1", port)).map_err(|e| parallel_error("bind".into(), Some(e)))?;
        serve(&listener, b"id", 2, Duration::from_secs(20))?;
        assert_eq!(client.join().expect("the client thread")?, b"id");
        Ok(())
    }

    #[test]
    fn a_dead_address_times_out_with_an_error_that_names_it() -> Result<()> {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let address = format!("127.0.0.1:{}", port.map_err(|e| parallel_error("bind".into(), Some(e)))?);
        let started = Instant::now();
        let err = fetch(&address, 1, 2, Duration::from_millis(400)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = err.to_string();
        assert!(text.contains(&address) && text.contains("could not reach rank 0"), "{text}");
        assert!(std::error::Error::source(&err).is_some(), "the last connection error is kept");
        Ok(())
    }

    #[test]
    fn rank_0_refuses_a_rank_of_another_world_and_both_say_why() -> Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| parallel_error("bind".into(), Some(e)))?;
        let address = listener.local_addr().map_err(|e| parallel_error("addr".into(), Some(e)))?.to_string();
        let client = std::thread::spawn(move || fetch(&address, 1, 3, Duration::from_secs(20)));
        let served = serve(&listener, b"id", 2, Duration::from_secs(20)).unwrap_err().to_string();
        assert!(served.contains("WORLD_SIZE=3") && served.contains("WORLD_SIZE=2"), "{served}");
        let fetched = client.join().expect("the client thread").unwrap_err().to_string();
        assert!(fetched.contains("rank 0 refused rank 1") && fetched.contains("WORLD_SIZE=3"), "{fetched}");
        // Rank 0 alone times out naming the missing ranks.
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| parallel_error("bind".into(), Some(e)))?;
        let e = serve(&listener, b"id", 3, Duration::from_millis(200)).unwrap_err().to_string();
        assert!(e.contains("ranks [1, 2]"), "{e}");
        Ok(())
    }
}
