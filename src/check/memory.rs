//! How much memory a check may use, and how much it does.
//!
//! * [`CountingAllocator`] wraps the system allocator and keeps a process-wide count of live
//!   heap bytes. Installed as the global allocator (the library does so in `lib.rs`), it lets
//!   the search count *everything* it allocates — memo tables, interned model states, kv
//!   strings, vectors growing by doubling — instead of an estimate of its largest table.
//! * [`MemoryLimit`] reads the limit the kernel will enforce: the memory cgroup's (v1
//!   `memory.limit_in_bytes` / `hierarchical_memory_limit`, v2 `memory.max` of the cgroup and
//!   its ancestors) or, outside any limit, the machine's memory. A check that would outgrow
//!   its budget ends Unknown, with the reason, rather than being OOM-killed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Live heap bytes of the process, when [`CountingAllocator`] is the global allocator.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes it hands out and gets back.
///
/// One relaxed atomic add per allocation: the search allocates rarely (its tables grow by
/// doubling), so the count costs nothing measurable, and unlike a sampled RSS it is exact at
/// the moment the search asks.
pub struct CountingAllocator;

// SAFETY: every call is forwarded to `System` unchanged; the counter only observes sizes.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on as is.
        let block = unsafe { System.alloc(layout) };
        if !block.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let block = unsafe { System.alloc_zeroed(layout) };
        if !block.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        // SAFETY: `block` was allocated by this allocator (hence by `System`) with `layout`.
        unsafe { System.dealloc(block, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, passed on as is.
        let moved = unsafe { System.realloc(block, layout, new_size) };
        if !moved.is_null() {
            if new_size >= layout.size() {
                LIVE_BYTES.fetch_add(new_size - layout.size(), Ordering::Relaxed);
            } else {
                LIVE_BYTES.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        moved
    }
}

/// Live heap bytes of the process, or `None` when [`CountingAllocator`] is not the global
/// allocator (nothing was ever counted).
pub fn heap_bytes() -> Option<usize> {
    match LIVE_BYTES.load(Ordering::Relaxed) {
        0 => None,
        bytes => Some(bytes),
    }
}

/// The share of the memory limit a check may fill by default. The rest covers what the
/// allocator's own bookkeeping and fragmentation add to the counted bytes, the stacks and the
/// binary, and a runner's other state (history, probes, report).
pub const DEFAULT_SHARE_PERCENT: usize = 60;

/// Budgets below this are raised to it: a check needs a little room to say anything.
const MINIMUM_BUDGET: usize = 16 << 20;

/// The memory limit the kernel enforces on this process, and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The limit, in bytes.
    pub bytes: usize,
    /// Where it was read, e.g. `cgroup v2 memory.max of /kubepods/pod1234/runner`.
    pub source: String,
}

impl MemoryLimit {
    /// The limit of this process, read from the live system (`/proc`, `/sys/fs/cgroup`).
    pub fn of_this_process() -> Option<MemoryLimit> {
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Self::read(Path::new("/"), &cgroups, &mountinfo, &meminfo)
    }

    /// The limit given the contents of `/proc/self/cgroup`, `/proc/self/mountinfo` and
    /// `/proc/meminfo`, with cgroup files looked up under `root` (`/` on a live system; a
    /// fixture tree in tests). The smallest of the cgroup limits and the machine's memory.
    pub fn read(root: &Path, cgroups: &str, mountinfo: &str, meminfo: &str) -> Option<Self> {
        let machine = meminfo_total(meminfo).map(|bytes| MemoryLimit {
            bytes,
            source: "the machine's memory (MemTotal)".to_owned(),
        });
        let cgroup = cgroup_limit(root, cgroups, mountinfo);
        match (cgroup, machine) {
            (Some(c), Some(m)) if m.bytes < c.bytes => Some(m),
            (Some(c), _) => Some(c),
            (None, m) => m,
        }
    }
}

/// The limit of this process, read once: it is set when the container starts, and checks
/// of many small histories should not pay for reading `/proc` each time.
pub fn limit_of_this_process() -> Option<&'static MemoryLimit> {
    static LIMIT: std::sync::OnceLock<Option<MemoryLimit>> = std::sync::OnceLock::new();
    LIMIT.get_or_init(MemoryLimit::of_this_process).as_ref()
}

/// The default budget of a check starting now: [`DEFAULT_SHARE_PERCENT`] of the limit, less
/// what the process's heap already holds. Without a readable limit, 8 GiB.
pub fn default_budget() -> usize {
    match limit_of_this_process() {
        Some(limit) => budget_within(limit.bytes, heap_bytes().unwrap_or(0)),
        None => 8 << 30,
    }
}

/// The budget for a check under `limit` when the process already holds `in_use` (pure).
pub fn budget_within(limit: usize, in_use: usize) -> usize {
    (limit / 100 * DEFAULT_SHARE_PERCENT)
        .saturating_sub(in_use)
        .max(MINIMUM_BUDGET)
}

/// What a running check has used against its budget.
#[derive(Debug)]
pub(crate) struct MemoryGauge {
    /// Live heap bytes when the check started (counting allocator installed).
    baseline: Option<usize>,
    /// The budget, in bytes.
    pub max_bytes: usize,
}

impl MemoryGauge {
    /// A gauge for a check that starts now with `max_bytes` to spend.
    pub fn start(max_bytes: usize) -> Self {
        MemoryGauge {
            baseline: heap_bytes(),
            max_bytes,
        }
    }

    /// Would the check exceed its budget with `extra` more bytes? `own_estimate` is what the
    /// caller counts itself, used only when the counting allocator is not installed.
    #[inline]
    pub fn exceeds(&self, extra: usize, own_estimate: usize) -> bool {
        let used = match (self.baseline, heap_bytes()) {
            (Some(baseline), Some(now)) => now.saturating_sub(baseline),
            _ => own_estimate,
        };
        used.saturating_add(extra) > self.max_bytes
    }
}

/// Parses a size in bytes as Kubernetes writes quantities: `536870912`, `512Mi`, `1Gi`,
/// `300M`, `2G` (binary `Ki` `Mi` `Gi` `Ti`, decimal `k` `M` `G` `T`).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits);
    let number: usize = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a whole number of bytes"))?;
    let scale: usize = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" | "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use Ki, Mi, Gi, Ti, k, M, G or T (e.g. 512Mi)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too large"))
}

fn meminfo_total(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// A cgroup mount: where it is mounted, the cgroup path it shows at that point, its version.
struct Mount {
    point: PathBuf,
    root: String,
    v2: bool,
}

fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            // `ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPER_OPTIONS`
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let mut rest = after.split(' ');
            let fstype = rest.next()?;
            let super_options = rest.nth(1).unwrap_or_default();
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" if super_options.split(',').any(|o| o == "memory") => false,
                _ => return None,
            };
            Some(Mount {
                root: unescape_mount_path(fields.get(3)?),
                point: PathBuf::from(unescape_mount_path(fields.get(4)?)),
                v2,
            })
        })
        .collect()
}

/// mountinfo escapes spaces, tabs, newlines and backslashes as octal (`\040`).
fn unescape_mount_path(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of `cgroup_path` under `mount`, if the mount shows it.
fn cgroup_dir(root: &Path, mount: &Mount, cgroup_path: &str) -> Option<PathBuf> {
    let relative = if mount.root == "/" {
        cgroup_path
    } else {
        cgroup_path.strip_prefix(mount.root.as_str())?
    };
    let relative = relative.trim_start_matches('/');
    let point = mount.point.strip_prefix("/").unwrap_or(&mount.point);
    Some(root.join(point).join(relative))
}

fn read_number(path: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(path).ok()?;
    text.trim().parse().ok()
}

/// v1 reports "no limit" as the largest page-aligned counter value; anything this large is
/// no limit.
const V1_UNLIMITED: usize = 1 << 62;

fn cgroup_limit(root: &Path, cgroups: &str, mountinfo: &str) -> Option<MemoryLimit> {
    let mounts = cgroup_mounts(mountinfo);
    let mut limits = Vec::new();
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            // cgroup v2: the limit of the cgroup is the smallest `memory.max` on the way up.
            for mount in mounts.iter().filter(|m| m.v2) {
                let Some(mut dir) = cgroup_dir(root, mount, path) else {
                    continue;
                };
                let top = cgroup_dir(root, mount, &mount.root).unwrap_or_else(|| dir.clone());
                loop {
                    if let Ok(text) = std::fs::read_to_string(dir.join("memory.max"))
                        && let Ok(bytes) = text.trim().parse::<usize>()
                    {
                        let shown = dir.strip_prefix(root).unwrap_or(&dir).display().to_string();
                        limits.push(MemoryLimit {
                            bytes,
                            source: format!("cgroup v2 memory.max of /{shown}"),
                        });
                    }
                    if dir == top || !dir.pop() || !dir.starts_with(&top) {
                        break;
                    }
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            for mount in mounts.iter().filter(|m| !m.v2) {
                let Some(dir) = cgroup_dir(root, mount, path) else {
                    continue;
                };
                // The hierarchical limit already accounts for every ancestor's.
                let hierarchical = std::fs::read_to_string(dir.join("memory.stat"))
                    .ok()
                    .and_then(|stat| {
                        stat.lines()
                            .find_map(|l| l.strip_prefix("hierarchical_memory_limit "))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                    });
                let (bytes, file) = match hierarchical {
                    Some(bytes) => (Some(bytes), "hierarchical_memory_limit"),
                    None => (
                        read_number(&dir.join("memory.limit_in_bytes")),
                        "memory.limit_in_bytes",
                    ),
                };
                if let Some(bytes) = bytes.filter(|b| *b < V1_UNLIMITED) {
                    limits.push(MemoryLimit {
                        bytes,
                        source: format!("cgroup v1 {file} of {path}"),
                    });
                }
            }
        }
    }
    limits.into_iter().min_by_key(|l| l.bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempdir::TempTree {
        tempdir::TempTree::new(files)
    }

    mod tempdir {
        use std::path::{Path, PathBuf};

        /// A directory of fixture files, removed on drop.
        pub struct TempTree(PathBuf);

        impl TempTree {
            pub fn new(files: &[(&str, &str)]) -> Self {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "schism-cgroup-fixture-{}-{}",
                    std::process::id(),
                    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                for (path, content) in files {
                    let file = dir.join(path);
                    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                    std::fs::write(file, content).unwrap();
                }
                TempTree(dir)
            }

            pub fn path(&self) -> &Path {
                &self.0
            }
        }

        impl Drop for TempTree {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const MEMINFO: &str = "MemTotal:       24000000 kB\nMemFree:  1 kB\n";
    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";

    #[test]
    fn cgroup_v2_takes_the_smallest_memory_max_of_the_cgroup_and_its_ancestors() {
        let fixture = tree(&[
            ("sys/fs/cgroup/kubepods/memory.max", "max\n"),
            ("sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n"),
            ("sys/fs/cgroup/kubepods/pod1/runner/memory.max", "max\n"),
        ]);
        let limit = MemoryLimit::read(
            fixture.path(),
            "0::/kubepods/pod1/runner\n",
            V2_MOUNT,
            MEMINFO,
        )
        .unwrap();
        assert_eq!(limit.bytes, 512 << 20);
        assert!(limit.source.contains("memory.max"), "{}", limit.source);
        assert!(limit.source.contains("pod1"), "{}", limit.source);
    }

    #[test]
    fn cgroup_v2_inside_a_cgroup_namespace_reads_the_mount_root() {
        // In a container with its own cgroup namespace the process sees itself at `/`.
        let fixture = tree(&[("sys/fs/cgroup/memory.max", "268435456\n")]);
        let limit = MemoryLimit::read(fixture.path(), "0::/\n", V2_MOUNT, MEMINFO).unwrap();
        assert_eq!(limit.bytes, 256 << 20);
    }

    #[test]
    fn cgroup_v1_prefers_the_hierarchical_limit_and_ignores_unlimited() {
        let mountinfo =
            "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
        let fixture = tree(&[
            (
                "sys/fs/cgroup/memory/jobs/a/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "sys/fs/cgroup/memory/jobs/a/memory.stat",
                "cache 0\nhierarchical_memory_limit 268435456\n",
            ),
        ]);
        let limit =
            MemoryLimit::read(fixture.path(), "4:memory:/jobs/a\n", mountinfo, MEMINFO).unwrap();
        assert_eq!(limit.bytes, 256 << 20);
        assert!(limit.source.contains("hierarchical"), "{}", limit.source);

        let unlimited = tree(&[(
            "sys/fs/cgroup/memory/jobs/a/memory.limit_in_bytes",
            "9223372036854771712\n",
        )]);
        let limit =
            MemoryLimit::read(unlimited.path(), "4:memory:/jobs/a\n", mountinfo, MEMINFO).unwrap();
        assert_eq!(limit.bytes, 24_000_000 * 1024, "falls back to MemTotal");
    }

    #[test]
    fn a_mount_of_a_subtree_is_resolved_relative_to_its_root() {
        // Docker without a cgroup namespace mounts the container's own cgroup.
        let mountinfo =
            "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n";
        let fixture = tree(&[("sys/fs/cgroup/memory/memory.limit_in_bytes", "134217728\n")]);
        let limit = MemoryLimit::read(fixture.path(), "4:memory:/docker/abc\n", mountinfo, MEMINFO)
            .unwrap();
        assert_eq!(limit.bytes, 128 << 20);
    }

    #[test]
    fn the_machine_bounds_a_larger_cgroup_limit() {
        let fixture = tree(&[("sys/fs/cgroup/memory.max", "99999999999999\n")]);
        let limit = MemoryLimit::read(fixture.path(), "0::/\n", V2_MOUNT, MEMINFO).unwrap();
        assert_eq!(limit.bytes, 24_000_000 * 1024);
    }

    #[test]
    fn the_budget_is_a_share_of_the_limit_less_what_is_held() {
        assert_eq!(budget_within(1000 << 20, 100 << 20), 500 << 20);
        assert_eq!(budget_within(10 << 20, 0), MINIMUM_BUDGET);
    }

    #[test]
    fn sizes_read_as_kubernetes_quantities() {
        assert_eq!(parse_size("512Mi"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2_000_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(
            parse_size("12 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_size("Mi").unwrap_err().contains("whole number"));
    }

    #[test]
    fn the_counting_allocator_sees_a_large_allocation() {
        let before = heap_bytes().expect("the library installs the counting allocator");
        let block = vec![0u8; 64 << 20];
        let during = heap_bytes().unwrap();
        drop(block);
        assert!(during >= before + (48 << 20), "{before} -> {during}");
    }
}
