//! Added latency: `tc netem` where the kernel has it, otherwise an NFQUEUE delay loop that holds
//! each packet arriving from the chosen peers for the delay and then accepts it.
//!
//! Why ingress: a packet held on egress stays charged to the sender's socket buffer and TCP
//! throughput collapses (measured 0.4 Mbit/s); held on ingress it costs nothing but time.
//! Why `--queue-bypass`: if the loop dies with its process, the kernel lets traffic through
//! instead of dropping it, so a crash never turns a delay into a partition.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::Ipv4Addr;
use std::os::fd::RawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::guard::Guard;
use super::qdisc::{install_root_qdiscs, netem_args};
use super::tools::{Tool, run_tool};
use super::{AppliedFault, DataPlaneError, FaultId, FaultKind, Netns, RULE_COMMENT_PREFIX};

/// Which mechanism implements a latency fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LatencyBackend {
    /// `tc qdisc … netem` on every interface's egress.
    Netem,
    /// iptables NFQUEUE on ingress plus Schism's in-process delay loop.
    NfQueue,
}

impl std::fmt::Display for LatencyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LatencyBackend::Netem => "netem",
            LatencyBackend::NfQueue => "nfqueue",
        })
    }
}

/// Delay packets by `delay` ± `jitter` (uniform).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencySpec {
    /// Added one-way delay, > 0 and ≤ 60 s.
    pub delay: Duration,
    /// Uniform variation around the delay; a packet is never delayed by less than zero.
    pub jitter: Duration,
    /// Peers whose packets are delayed on arrival; empty means all traffic of the namespace
    /// ("this node is slow": every round trip with it grows by `delay`).
    pub from_peers: Vec<Ipv4Addr>,
    /// Force a backend instead of detecting one. Netem works on egress of whole interfaces, so
    /// a latency limited to some peers always uses the NFQUEUE loop.
    pub backend: Option<LatencyBackend>,
}

/// Adds latency in `netem` until `deadline`. The backend in use is in the returned fault's
/// [`FaultKind::Latency`].
pub fn apply_latency(
    netns: &Netns,
    id: &FaultId,
    spec: &LatencySpec,
    deadline: Instant,
) -> Result<AppliedFault, DataPlaneError> {
    if spec.delay.is_zero() || spec.delay > Duration::from_secs(60) {
        return Err(DataPlaneError::Invalid {
            what: "latency delay",
            reason: format!("{:?} is not > 0 and ≤ 60s", spec.delay),
        });
    }
    let target = netns.path().display().to_string();
    let try_netem = spec.from_peers.is_empty() && spec.backend != Some(LatencyBackend::NfQueue);
    if try_netem {
        match install_root_qdiscs(netns, &netem_args(spec.delay, spec.jitter), deadline) {
            Ok((revert, guard)) => {
                let kind = FaultKind::Latency(LatencyBackend::Netem);
                return Ok(AppliedFault::new(
                    id.clone(),
                    kind,
                    target,
                    deadline,
                    revert,
                    Some(guard),
                ));
            }
            Err(DataPlaneError::ToolFailed { stderr, .. })
                if stderr.contains("qdisc kind is unknown")
                    && spec.backend != Some(LatencyBackend::Netem) =>
            {
                tracing::debug!(netns = %target, "kernel has no sch_netem; using NFQUEUE");
            }
            Err(error) => return Err(error),
        }
    }
    let (revert, guard) = start_delay_queue(netns, id, spec, deadline)?;
    let kind = FaultKind::Latency(LatencyBackend::NfQueue);
    Ok(AppliedFault::new(
        id.clone(),
        kind,
        target,
        deadline,
        revert,
        Some(guard),
    ))
}

/// Queue numbers are per namespace; a process-wide counter keeps the faults of this process
/// from sharing one when they land in the same namespace.
fn next_queue_number() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0x5c15);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The iptables-restore lines that send the chosen traffic to queue `queue`.
pub(crate) fn queue_rules(id: &FaultId, from_peers: &[Ipv4Addr], queue: u16) -> Vec<String> {
    let target = format!(
        "-m comment --comment {} -j NFQUEUE --queue-num {queue} --queue-bypass",
        id.rule_comment()
    );
    if from_peers.is_empty() {
        vec![format!("-A PREROUTING ! -i lo {target}")]
    } else {
        from_peers
            .iter()
            .map(|peer| format!("-A PREROUTING -s {peer}/32 {target}"))
            .collect()
    }
}

/// Wraps rule lines in a mangle-table batch for `iptables-restore --noflush`.
fn mangle_batch(lines: &[String]) -> String {
    let mut batch = String::from("*mangle\n");
    for line in lines {
        batch.push_str(line);
        batch.push('\n');
    }
    batch.push_str("COMMIT\n");
    batch
}

/// Deletes every mangle rule whose comment is `schism:<id>`, or every Schism rule when `id` is
/// `None`. Returns the deleted rules as `iptables -S` prints them.
pub(crate) fn delete_queue_rules(
    netns: &Netns,
    id: Option<&FaultId>,
) -> Result<Vec<String>, DataPlaneError> {
    let listing = run_tool(netns, Tool::Iptables, &["-w", "-t", "mangle", "-S"], None)?;
    let wanted = |line: &&str| match id {
        Some(id) => comment_of(line).is_some_and(|comment| comment == id.rule_comment()),
        None => comment_of(line).is_some_and(|comment| comment.starts_with(RULE_COMMENT_PREFIX)),
    };
    let rules: Vec<String> = listing
        .lines()
        .filter(|line| line.starts_with("-A "))
        .filter(wanted)
        .map(str::to_string)
        .collect();
    if rules.is_empty() {
        return Ok(rules);
    }
    let deletions: Vec<String> = rules
        .iter()
        .map(|rule| format!("-D {}", &rule[3..]))
        .collect();
    run_tool(
        netns,
        Tool::IptablesRestore,
        &["-w", "--noflush"],
        Some(&mangle_batch(&deletions)),
    )?;
    Ok(rules)
}

/// The comment of an `iptables -S` line, without quotes.
fn comment_of(line: &str) -> Option<&str> {
    let rest = line.split("--comment ").nth(1)?;
    let rest = rest.trim_start_matches('"');
    rest.split(['"', ' ']).next()
}

/// The guard's steps for NFQUEUE rules: one `iptables -D` per rule. The delay loop needs
/// none: it is a thread of this process, and a rule whose queue has no reader lets packets
/// through (`--queue-bypass`), so once the rules are gone nothing of the fault is left.
pub(crate) fn queue_rule_undo(
    netns: &Netns,
    rules: &[String],
) -> Result<Vec<super::guard::UndoStep>, DataPlaneError> {
    rules
        .iter()
        .map(|rule| {
            let spec = rule.strip_prefix("-A ").unwrap_or(rule);
            let mut args = vec!["-w", "-t", "mangle", "-D"];
            args.extend(spec.split_whitespace());
            super::guard::tool_step(netns, Tool::Iptables, &args)
        })
        .collect()
}

/// Starts the delay loop thread inside `netns`, then installs the NFQUEUE rules (in that order,
/// so no packet reaches a queue without a reader). Returns the revert and the armed guard.
fn start_delay_queue(
    netns: &Netns,
    id: &FaultId,
    spec: &LatencySpec,
    deadline: Instant,
) -> Result<(super::fault::Revert, Guard), DataPlaneError> {
    super::require_tools(&[Tool::Iptables, Tool::IptablesRestore])?;
    let queue = next_queue_number();
    let rules = queue_rules(id, &spec.from_peers, queue);
    let guard = Guard::start(queue_rule_undo(netns, &rules)?, Some(deadline))?;
    let delay_loop = match DelayLoop::start(netns, queue, spec.delay, spec.jitter) {
        Ok(running) => running,
        Err(error) => {
            guard.disarm();
            return Err(error);
        }
    };
    if let Err(error) = run_tool(
        netns,
        Tool::IptablesRestore,
        &["-w", "--noflush"],
        Some(&mangle_batch(&rules)),
    ) {
        delay_loop.stop();
        // The batch is all or nothing: no rule of it is in place.
        guard.disarm();
        return Err(error);
    }
    let netns = netns.clone();
    let id = id.clone();
    let mut delay_loop = Some(delay_loop);
    let revert: super::fault::Revert = Box::new(move || {
        // Rules first: packets already held are released by `stop`, new ones are not queued.
        // The loop stops even if a rule stays behind: with --queue-bypass that rule then lets
        // traffic through, and a retry only has the rules left to delete.
        let deleted = delete_queue_rules(&netns, Some(&id));
        if let Some(running) = delay_loop.take() {
            running.stop();
        }
        deleted.map(drop)
    });
    Ok((revert, guard))
}

/// A running delay loop: a thread inside the namespace that owns the queue socket.
struct DelayLoop {
    wake: RawFd,
    thread: JoinHandle<()>,
}

/// Serialises socket creation so the new netfilter netlink socket can be told apart from the
/// ones other delay loops opened (the `nfq` crate does not expose its descriptor).
static QUEUE_OPEN: Mutex<()> = Mutex::new(());

impl DelayLoop {
    fn start(
        netns: &Netns,
        queue: u16,
        delay: Duration,
        jitter: Duration,
    ) -> Result<Self, DataPlaneError> {
        // SAFETY: plain syscall; the descriptor is closed in `stop`.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if wake < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let netns_for_thread = netns.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("schism-delay-{queue}"))
            .spawn(move || {
                let setup = netns_for_thread
                    .enter_current_thread()
                    .map_err(|e| e.to_string())
                    .and_then(|()| open_queue(queue));
                match setup {
                    Ok((nfqueue, fd)) => {
                        let _ = ready_tx.send(Ok(()));
                        run_delay_loop(nfqueue, fd, wake, queue, delay, jitter);
                    }
                    Err(reason) => {
                        let _ = ready_tx.send(Err(reason));
                    }
                }
            });
        let thread = match spawned {
            Ok(thread) => thread,
            Err(error) => {
                // SAFETY: we own the descriptor and nobody else uses it.
                unsafe { libc::close(wake) };
                return Err(error.into());
            }
        };
        let setup = ready_rx
            .recv()
            .unwrap_or_else(|_| Err("delay thread exited during setup".into()));
        match setup {
            Ok(()) => Ok(Self { wake, thread }),
            Err(reason) => {
                let _ = thread.join();
                // SAFETY: the thread has exited; nobody else uses the descriptor.
                unsafe { libc::close(wake) };
                Err(DataPlaneError::DelayQueue {
                    netns: netns.path().display().to_string(),
                    reason,
                })
            }
        }
    }

    /// Releases every held packet and ends the loop.
    fn stop(self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes to an eventfd we own.
        unsafe { libc::write(self.wake, (&one as *const u64).cast(), 8) };
        let _ = self.thread.join();
        // SAFETY: the loop has exited; nobody else uses the descriptor.
        unsafe { libc::close(self.wake) };
    }
}

/// Descriptors of netfilter netlink sockets currently open in this process.
fn netfilter_sockets() -> Vec<RawFd> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter(|&fd| {
            socket_option(fd, libc::SO_DOMAIN) == Some(libc::AF_NETLINK)
                && socket_option(fd, libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER)
        })
        .collect()
}

fn socket_option(fd: RawFd, option: libc::c_int) -> Option<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

/// Opens and configures the queue in the calling thread's namespace and finds its descriptor.
fn open_queue(queue: u16) -> Result<(nfq::Queue, RawFd), String> {
    let (mut nfqueue, fd) = {
        let _guard = QUEUE_OPEN.lock().unwrap_or_else(|p| p.into_inner());
        let before = netfilter_sockets();
        let nfqueue = nfq::Queue::open().map_err(|e| format!("opening netlink socket: {e}"))?;
        let fresh: Vec<RawFd> = netfilter_sockets()
            .into_iter()
            .filter(|fd| !before.contains(fd))
            .collect();
        match fresh.as_slice() {
            [fd] => (nfqueue, *fd),
            _ => return Err("cannot identify the queue's netlink socket".into()),
        }
    };
    nfqueue
        .bind(queue)
        .map_err(|e| format!("binding queue {queue}: {e} (is another program using it?)"))?;
    // Metadata only: the loop never looks at payloads, and held packets then cost ~8 KiB each.
    nfqueue
        .set_copy_range(queue, 0)
        .map_err(|e| format!("setting copy range: {e}"))?;
    nfqueue
        .set_queue_max_len(queue, 65_536)
        .map_err(|e| format!("setting queue length: {e}"))?;
    // When the queue is full, pass packets undelayed rather than adding loss nobody asked for.
    nfqueue
        .set_fail_open(queue, true)
        .map_err(|e| format!("setting fail-open: {e}"))?;
    nfqueue.set_nonblocking(true);
    Ok((nfqueue, fd))
}

/// A queued packet waiting for its release time.
struct HeldPacket {
    release_at: Instant,
    sequence: u64,
    message: nfq::Message,
}

impl PartialEq for HeldPacket {
    fn eq(&self, other: &Self) -> bool {
        (self.release_at, self.sequence) == (other.release_at, other.sequence)
    }
}
impl Eq for HeldPacket {}
impl PartialOrd for HeldPacket {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeldPacket {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.release_at, self.sequence).cmp(&(other.release_at, other.sequence))
    }
}

/// The loop: block in `poll` on the queue socket and the wake-up eventfd, with a timeout that
/// ends when the next held packet is due; never spin.
fn run_delay_loop(
    mut nfqueue: nfq::Queue,
    queue_fd: RawFd,
    wake: RawFd,
    queue: u16,
    delay: Duration,
    jitter: Duration,
) {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos() as u64)
        .unwrap_or_default();
    let seed = clock ^ u64::from(queue) ^ u64::from(std::process::id());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held: BinaryHeap<Reverse<HeldPacket>> = BinaryHeap::new();
    let mut sequence = 0u64;
    loop {
        let now = Instant::now();
        let timeout_ms = match held.peek() {
            None => -1,
            Some(Reverse(next)) => {
                let wait = next.release_at.saturating_duration_since(now);
                // Round up so we never wake a little early and spin until the packet is due.
                wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int
            }
        };
        let mut fds = [
            libc::pollfd {
                fd: queue_fd,
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake,
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd structures.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            tracing::warn!(queue, error = %std::io::Error::last_os_error(), "poll failed; stopping delay loop");
            break;
        }
        if fds[1].revents != 0 {
            break;
        }
        if fds[0].revents != 0 {
            let arrived = Instant::now();
            loop {
                match nfqueue.recv() {
                    Ok(message) => {
                        sequence += 1;
                        let release_at = arrived + jittered(delay, jitter, &mut rng);
                        held.push(Reverse(HeldPacket {
                            release_at,
                            sequence,
                            message,
                        }));
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        tracing::warn!(queue, %error, "receiving from NFQUEUE failed");
                        break;
                    }
                }
            }
        }
        let now = Instant::now();
        while held
            .peek()
            .is_some_and(|Reverse(next)| next.release_at <= now)
        {
            let Reverse(packet) = held.pop().expect("peeked");
            accept(&mut nfqueue, packet.message, queue);
        }
    }
    for Reverse(packet) in held.into_sorted_vec().into_iter().rev() {
        accept(&mut nfqueue, packet.message, queue);
    }
    let _ = nfqueue.unbind(queue);
}

fn accept(nfqueue: &mut nfq::Queue, mut message: nfq::Message, queue: u16) {
    message.set_verdict(nfq::Verdict::Accept);
    if let Err(error) = nfqueue.verdict(message) {
        tracing::warn!(queue, %error, "verdict failed");
    }
}

/// `delay` plus a uniform offset in `[-jitter, +jitter]`, never below zero.
fn jittered(delay: Duration, jitter: Duration, rng: &mut ChaCha8Rng) -> Duration {
    if jitter.is_zero() {
        return delay;
    }
    let jitter_us = jitter.as_micros() as i64;
    let offset = rng.random_range(-jitter_us..=jitter_us);
    let total = delay.as_micros() as i64 + offset;
    Duration::from_micros(total.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_rules_match_peers_or_all_but_loopback() {
        let id = FaultId::new("lat").unwrap();
        let all = queue_rules(&id, &[], 7);
        assert_eq!(
            all,
            vec![
                "-A PREROUTING ! -i lo -m comment --comment schism:lat -j NFQUEUE --queue-num 7 --queue-bypass"
            ]
        );
        let some = queue_rules(
            &id,
            &[Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 3)],
            7,
        );
        assert_eq!(some.len(), 2);
        assert!(some[1].starts_with("-A PREROUTING -s 10.0.0.3/32 "));
    }

    #[test]
    fn comments_are_read_with_or_without_quotes() {
        assert_eq!(
            comment_of("-A PREROUTING -m comment --comment \"schism:a\" -j NFQUEUE"),
            Some("schism:a")
        );
        assert_eq!(
            comment_of("-A PREROUTING -m comment --comment schism:a -j NFQUEUE"),
            Some("schism:a")
        );
        assert_eq!(comment_of("-A PREROUTING -j ACCEPT"), None);
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_negative() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1000 {
            let d = jittered(
                Duration::from_millis(10),
                Duration::from_millis(20),
                &mut rng,
            );
            assert!(d <= Duration::from_millis(30));
        }
        assert_eq!(
            jittered(Duration::from_millis(10), Duration::ZERO, &mut rng),
            Duration::from_millis(10)
        );
    }
}
