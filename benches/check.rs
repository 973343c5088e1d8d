//! Checker benchmarks: prints check time per history (parsing excluded, mean of several runs)
//! next to Porcupine's figures and the project's targets, and the peak memory. Figures only;
//! nothing here fails on a slow machine.
//!
//! `cargo bench --bench check` (release profile). `SCHISM_BENCH_QUICK=1` runs each case once.

#[path = "../tests/common/history_gen.rs"]
mod history_gen;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use history_gen::{Gen, Rng, generate};
use schism::check::formats::{Format, read_file};
use schism::check::{
    Call, CheckOptions, History, ModelKind, Operation, Outcome, Value, Verdict, check_history,
};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/porcupine")
        .join(rel)
}

/// Mean check time over enough runs to fill about half a second (at least 3, at most 200);
/// a single run when one takes over two seconds.
fn measure(h: &History, opts: &CheckOptions) -> (Duration, Verdict) {
    let quick = std::env::var_os("SCHISM_BENCH_QUICK").is_some();
    let first = Instant::now();
    let verdict = check_history(h, opts).expect("valid history").verdict;
    let once = first.elapsed();
    if quick || once > Duration::from_secs(2) {
        return (once, verdict);
    }
    let runs =
        (Duration::from_millis(500).as_nanos() / once.as_nanos().max(1)).clamp(3, 200) as u32;
    let start = Instant::now();
    for _ in 0..runs {
        let v = check_history(h, opts).expect("valid history").verdict;
        assert_eq!(v, verdict, "verdicts must not depend on the run");
    }
    (start.elapsed() / runs, verdict)
}

fn porcupine_ms() -> Vec<(String, String, f64)> {
    let text = std::fs::read_to_string(data("PORCUPINE-TIMINGS.tsv")).expect("timings");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Some((
                c.first()?.to_string(),
                c.get(2)?.to_string(),
                c.get(4)?.parse().ok()?,
            ))
        })
        .collect()
}

fn peak_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Adds, at time `t`: write -1, then write -2, then a read of -1 that begins after both
/// completed. Written values are otherwise positive and unique, so this read is stale.
fn plant_stale_read(h: &mut History, t: u64) {
    let key = h.ops.first().and_then(|o| o.key.clone());
    let mut push = |process, call, invoke| {
        h.ops.push(Operation {
            process,
            key: key.clone(),
            call,
            outcome: Outcome::Ok,
            invoke,
            complete: Some(invoke + 1),
            line: 0,
        })
    };
    push(
        9001,
        Call::Write {
            value: Value::Int(-1),
        },
        t,
    );
    push(
        9002,
        Call::Write {
            value: Value::Int(-2),
        },
        t + 2,
    );
    push(
        9003,
        Call::Read {
            value: Some(Value::Int(-1)),
        },
        t + 4,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict_mark(got: Verdict, want: &str) -> &'static str {
    if got.name() == want {
        "same verdict"
    } else {
        "VERDICT DIFFERS"
    }
}

fn main() {
    let porcupine = porcupine_ms();
    let reference = |file: &str, mode: &str| {
        porcupine
            .iter()
            .find(|(f, m, _)| f == file && m.contains(mode))
            .map(|(_, _, t)| *t)
    };
    let expected: Vec<(String, String)> = std::fs::read_to_string(data("EXPECTED.tsv"))
        .expect("EXPECTED.tsv")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            Some((c.first()?.to_string(), c.get(2)?.to_string()))
        })
        .collect();
    let want = |file: &str| {
        expected
            .iter()
            .find(|(f, _)| f == file)
            .map_or("?".to_string(), |(_, v)| v.clone())
    };

    println!("schism check benchmark (check time only, parse excluded; mean of repeated runs)");
    println!();
    println!("== Jepsen etcd suite (cas-register, 102 files)");
    let mut total = Duration::ZERO;
    let mut porcupine_total = 0.0;
    let mut rows = Vec::new();
    let mut differs = 0;
    for (file, _) in expected.iter().filter(|(f, _)| f.starts_with("jepsen/")) {
        let h = read_file(&data(file), Format::Auto).expect("readable");
        let (t, v) = measure(&h, &CheckOptions::new(ModelKind::CasRegister));
        if v.name() != want(file) {
            differs += 1;
        }
        total += t;
        porcupine_total += reference(file, "no-partition").unwrap_or(0.0);
        rows.push((t, file.clone()));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    println!(
        "  total            {:9.3} ms   porcupine {:9.3} ms   target <= {:7.1} ms   ({} verdicts differ)",
        ms(total),
        porcupine_total,
        porcupine_total / 4.0,
        differs
    );
    for name in ["jepsen/etcd_002.log", "jepsen/etcd_007.log"] {
        let t = rows
            .iter()
            .find(|(_, f)| f == name)
            .map_or(Duration::ZERO, |r| r.0);
        let p = reference(name, "no-partition").unwrap_or(f64::NAN);
        println!(
            "  {:<16} {:9.3} ms   porcupine {:9.3} ms   target <= {:7.1} ms",
            name.trim_start_matches("jepsen/"),
            ms(t),
            p,
            p / 4.0
        );
    }
    println!("  slowest five:");
    for (t, f) in rows.iter().take(5) {
        println!("    {:<22} {:9.3} ms", f, ms(*t));
    }

    println!();
    println!("== kv (get/put/append)");
    for (file, partition) in [
        ("kv/c01-ok.txt", true),
        ("kv/c10-ok.txt", true),
        ("kv/c10-bad.txt", true),
        ("kv/c50-ok.txt", true),
        ("kv/c50-bad.txt", true),
        ("kv/c10-ok.txt", false),
        ("kv/c10-bad.txt", false),
    ] {
        let h = read_file(&data(file), Format::Auto).expect("readable");
        let opts = CheckOptions {
            partition,
            ..CheckOptions::new(ModelKind::Kv)
        };
        let (t, v) = measure(&h, &opts);
        let mode = if partition {
            "partition-by-key"
        } else {
            "no-partition"
        };
        let p = reference(file, mode).unwrap_or(f64::NAN);
        println!(
            "  {:<16} {:<13} {:9.3} ms   porcupine {:9.3} ms   target <= {:8.1} ms   {}",
            file.trim_start_matches("kv/"),
            if partition {
                "partitioned"
            } else {
                "unpartitioned"
            },
            ms(t),
            p,
            p / 4.0,
            verdict_mark(v, &want(file))
        );
    }

    println!();
    println!("== generated histories (a real sequential execution with random concurrency)");
    let cases = [
        (
            "100k ops, 200 keys, kv",
            Gen {
                model: ModelKind::Kv,
                keys: 200,
                processes: 64,
                ops: 100_000,
                info: 2,
                fail: 2,
                spread: 300,
            },
        ),
        (
            "100k ops, 200 keys, cas-register",
            Gen {
                model: ModelKind::CasRegister,
                keys: 200,
                processes: 64,
                ops: 100_000,
                info: 2,
                fail: 2,
                spread: 300,
            },
        ),
        (
            "10k ops, 1 key, cas-register, 10% unknown",
            Gen {
                model: ModelKind::CasRegister,
                keys: 1,
                processes: 8,
                ops: 10_000,
                info: 10,
                fail: 2,
                spread: 40,
            },
        ),
        (
            "10k ops, 1 key, cas-register, 25% unknown, 16 clients",
            Gen {
                model: ModelKind::CasRegister,
                keys: 1,
                processes: 16,
                ops: 10_000,
                info: 25,
                fail: 2,
                spread: 120,
            },
        ),
        (
            "10k ops, 1 key, register, 20% unknown",
            Gen {
                model: ModelKind::Register,
                keys: 1,
                processes: 8,
                ops: 10_000,
                info: 20,
                fail: 2,
                spread: 40,
            },
        ),
    ];
    for (name, g) in cases {
        let mut rng = Rng(2026);
        let h = generate(&g, &mut rng);
        let mut opts = CheckOptions::new(g.model);
        opts.timeout = Some(Duration::from_secs(60));
        let (t, v) = measure(&h, &opts);
        println!(
            "  {:<52} {:7} ops ({:5} unknown) {:10.3} ms   {}",
            name,
            h.ops.len(),
            h.indeterminate(),
            ms(t),
            v
        );
    }

    // A violation deep in a long history: the search must rule out every way of linearizing
    // what came before it.
    for (name, info) in [
        ("10k ops, 1 key, cas-register, stale read at 50%", 0),
        (
            "10k ops, 1 key, cas-register, 10% unknown, stale read at 50%",
            10,
        ),
    ] {
        let g = Gen {
            model: ModelKind::CasRegister,
            keys: 1,
            processes: 8,
            ops: 10_000,
            info,
            fail: 2,
            spread: 40,
        };
        let mut h = generate(&g, &mut Rng(7));
        plant_stale_read(&mut h, 50_000);
        let mut opts = CheckOptions::new(g.model);
        opts.timeout = Some(Duration::from_secs(60));
        let (t, v) = measure(&h, &opts);
        println!(
            "  {:<52} {:7} ops ({:5} unknown) {:10.3} ms   {}",
            name,
            h.ops.len(),
            h.indeterminate(),
            ms(t),
            v
        );
    }

    println!();
    println!("peak memory (VmHWM): {:.1} MiB", peak_memory_mib());
}
