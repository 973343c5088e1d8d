//! Transactional checker benchmark: the whole `schism check --model list-append` process
//! (reading included) on Jepsen-like list-append histories of 10 k, 100 k and 1 M
//! transactions, checked for strict serializability. Prints wall time, throughput, the
//! checker's own time, and peak resident memory, next to the targets (≤ 5 s and ≤ 1 GiB at
//! 1 M transactions, growth no worse than n log n). Figures only; nothing here fails on a
//! slow machine.
//!
//! The histories come from a simulated strict-serializable store: transactions of 1–4
//! micro-operations, about half of them appends, from concurrent clients, over a rotating
//! set of active keys that each take up to 32 appends, 1% of outcomes unknown.
//!
//! `cargo bench --bench check_txn`. `SCHISM_BENCH_QUICK=1` stops at 100 k;
//! `SCHISM_BENCH_KEEP=DIR` keeps the generated histories in DIR (for profiling).

#[path = "support/check_process.rs"]
mod check_process;

use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::Write as _;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use check_process::run_check;

/// The shape of a generated history.
struct Shape {
    txns: usize,
    clients: usize,
    active_keys: usize,
    appends_per_key: usize,
    seed: u64,
    /// End with a write skew on fresh keys, so the check must find, classify and explain it.
    plant_skew: bool,
}

/// Writes a strict-serializable list-append history in native JSON Lines.
fn generate(shape: &Shape, out: &mut impl std::io::Write) -> std::io::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(shape.seed);
    // Min-heap of (time the client is free, client).
    let mut free: BinaryHeap<std::cmp::Reverse<(u64, usize)>> = (0..shape.clients)
        .map(|c| std::cmp::Reverse((0, c)))
        .collect();
    let mut lists: Vec<Vec<i64>> = vec![Vec::new(); shape.active_keys];
    let mut names: Vec<u64> = (0..shape.active_keys as u64).collect();
    let mut next_key = shape.active_keys as u64;
    let mut next_value = 1i64;
    let mut serial = 0u64;
    let latency = 10 * shape.clients as u64;
    let mut line = String::new();
    for _ in 0..shape.txns {
        let std::cmp::Reverse((free_at, client)) = free.pop().expect("clients");
        // Transactions take effect in serial order, each inside its own invoke..complete.
        serial = serial.max(free_at) + 1 + rng.random_range(0..10);
        let invoke = rng.random_range(free_at..=serial);
        let complete = serial + rng.random_range(0..latency);
        let unknown = rng.random_range(0..100) == 0;
        let applies = !unknown || rng.random_bool(0.5);
        line.clear();
        let _ = write!(
            line,
            "{{\"process\":{client},\"type\":\"{}\",\"f\":\"txn\",\"value\":[",
            if unknown { "info" } else { "ok" }
        );
        let ops = rng.random_range(1..=4);
        for i in 0..ops {
            if i > 0 {
                line.push(',');
            }
            let slot = rng.random_range(0..shape.active_keys);
            let key = names[slot];
            if rng.random_bool(0.5) {
                let v = next_value;
                next_value += 1;
                if applies {
                    lists[slot].push(v);
                }
                let _ = write!(line, "[\"append\",{key},{v}]");
                if lists[slot].len() >= shape.appends_per_key {
                    // Retire the full key; a fresh one takes its place.
                    lists[slot].clear();
                    names[slot] = next_key;
                    next_key += 1;
                }
            } else if unknown {
                let _ = write!(line, "[\"r\",{key},null]");
            } else {
                let _ = write!(line, "[\"r\",{key},[");
                for (j, v) in lists[slot].iter().enumerate() {
                    if j > 0 {
                        line.push(',');
                    }
                    let _ = write!(line, "{v}");
                }
                line.push_str("]]");
            }
        }
        if unknown {
            let _ = writeln!(line, "],\"invoke\":{invoke},\"complete\":null}}");
            // A client whose outcome is unknown is replaced by a fresh one, as in Jepsen.
            free.push(std::cmp::Reverse((serial, client + shape.clients * 1000)));
        } else {
            let _ = writeln!(line, "],\"invoke\":{invoke},\"complete\":{complete}}}");
            free.push(std::cmp::Reverse((complete + 1, client)));
        }
        out.write_all(line.as_bytes())?;
    }
    if shape.plant_skew {
        let t = serial + 10 * latency;
        let (x, y) = (next_key, next_key + 1);
        let p = shape.clients * 1_000_000;
        writeln!(
            out,
            "{{\"process\":{p},\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"r\",{x},[]],[\"r\",{y},[]],[\"append\",{x},1]],\"invoke\":{t},\"complete\":{}}}",
            t + 10
        )?;
        writeln!(
            out,
            "{{\"process\":{},\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"r\",{x},[]],[\"r\",{y},[]],[\"append\",{y},2]],\"invoke\":{},\"complete\":{}}}",
            p + 1,
            t + 1,
            t + 11
        )?;
        writeln!(
            out,
            "{{\"process\":{},\"type\":\"ok\",\"f\":\"txn\",\"value\":[[\"r\",{x},[1]],[\"r\",{y},[2]]],\"invoke\":{},\"complete\":{}}}",
            p + 2,
            t + 20,
            t + 30
        )?;
    }
    Ok(())
}

fn main() {
    let quick = std::env::var_os("SCHISM_BENCH_QUICK").is_some();
    let keep = std::env::var_os("SCHISM_BENCH_KEEP").map(std::path::PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("schism-bench-txn-{}", std::process::id()))
    });
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sizes: &[usize] = if quick {
        &[10_000, 100_000]
    } else {
        &[10_000, 100_000, 1_000_000]
    };
    println!("list-append, strict-serializable, whole `schism check` process");
    println!(
        "{:>10} {:>8} {:>8} {:>9} {:>12} {:>9} {:>9}  verdict",
        "txns", "clients", "file MB", "wall s", "txns/s", "check s", "RSS MiB"
    );
    let mut walls = Vec::new();
    let largest = *sizes.last().expect("sizes");
    let cases = sizes
        .iter()
        .flat_map(|&n| [(n, 5, false), (n, 50, false)])
        .chain([(largest, 50, true)]);
    for (txns, clients, plant_skew) in cases {
        {
            let shape = Shape {
                txns,
                clients,
                active_keys: 2 * clients,
                appends_per_key: 32,
                seed: txns as u64 + clients as u64,
                plant_skew,
            };
            let name = if plant_skew { "skew" } else { "append" };
            let path = dir.join(format!("{name}-{txns}-{clients}.jsonl"));
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
            generate(&shape, &mut file).expect("write history");
            file.flush().expect("flush");
            drop(file);
            let mb = std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1e6);
            let (wall, rss, json) = run_check(
                &[
                    "--model",
                    "list-append",
                    "--consistency",
                    "strict-serializable",
                    "--json",
                ],
                &path,
            );
            let check_s = json["check_ms"].as_f64().unwrap_or(f64::NAN) / 1e3;
            let anomalies: Vec<&str> = json["anomaly_types"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            println!(
                "{txns:>10} {clients:>8} {mb:>8.1} {wall:>9.3} {:>12.0} {check_s:>9.3} {rss:>9.1}  {} {}",
                txns as f64 / wall,
                json["verdict"].as_str().unwrap_or("?"),
                anomalies.join(",")
            );
            if !plant_skew {
                walls.push((txns, clients, wall));
            }
            if keep.is_none() {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    println!();
    println!("growth (wall time ratio per 10× transactions; n log n would be about 10.5–12.0):");
    for clients in [5, 50] {
        let series: Vec<(usize, f64)> = walls
            .iter()
            .filter(|(_, c, _)| *c == clients)
            .map(|(n, _, w)| (*n, *w))
            .collect();
        for pair in series.windows(2) {
            println!(
                "  {clients} clients: {} → {}: ×{:.1}",
                pair[0].0,
                pair[1].0,
                pair[1].1 / pair[0].1
            );
        }
    }
    println!("targets: 1 M transactions ≤ 5 s, peak RSS ≤ 1024 MiB (Elle: 100–160 k txns/s)");
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
