//! The validator must survive anything a user (or a fuzzer) feeds it: it never panics, and on
//! input that is not a valid manifest it reports at least one problem.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use schism::api::validate::{DocumentReport, validate_bytes};

/// A valid manifest the hostile cases are grafted onto.
const BASE: &str = "apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: t
spec:
  target:
    statefulSet: etcd
  duration: 60s
";

/// A valid local-target manifest whose `nodes` line is `NODES`.
const LOCAL: &str = "apiVersion: schism.dev/v1alpha1
kind: Chaos
metadata:
  name: t
spec:
  target:
    local:
      nodes: NODES
      command: run {name}
      ready: {tcp: {port: 1}}
  duration: 60s
";

/// Validates `bytes`, turning a panic into an error message.
fn validate_catching(bytes: &[u8]) -> Result<Vec<DocumentReport>, String> {
    catch_unwind(AssertUnwindSafe(|| validate_bytes(bytes))).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".to_owned())
    })
}

fn problem_count(reports: &[DocumentReport]) -> usize {
    reports.iter().map(|r| r.problems.len()).sum()
}

/// Every case must be validated without a panic and with at least one problem; all failures are
/// reported together.
fn assert_all_rejected(cases: Vec<(String, Vec<u8>)>) {
    let mut failures = Vec::new();
    for (name, bytes) in &cases {
        match validate_catching(bytes) {
            Err(panic) => failures.push(format!("{name}: PANIC: {panic}")),
            Ok(reports) if problem_count(&reports) == 0 => {
                failures.push(format!("{name}: accepted, but it is not a valid manifest"))
            }
            Ok(reports) => {
                // A problem must say where and why.
                for report in &reports {
                    for p in &report.problems {
                        if p.path.is_empty() || p.reason.is_empty() {
                            failures.push(format!(
                                "{name}: problem with an empty path or reason: {p:?}"
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} hostile inputs mishandled:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn case(name: &str, bytes: impl Into<Vec<u8>>) -> (String, Vec<u8>) {
    (name.to_owned(), bytes.into())
}

/// `BASE` with `extra` appended under `spec:` (indented by two spaces).
fn with_spec(extra: &str) -> String {
    format!("{BASE}{extra}")
}

fn local_nodes(value: &str) -> String {
    LOCAL.replace("NODES", value)
}

#[test]
fn empty_and_document_free_inputs_are_reported() {
    assert_all_rejected(vec![
        case("empty file", ""),
        case("only a newline", "\n"),
        case("only whitespace", "   \n\t\n  "),
        case("only comments", "# nothing\n# here\n"),
        case("only ---", "---\n"),
        case("only --- and ...", "---\n...\n---\n---\n"),
        case("only --- with comments", "---\n# a\n---\n# b\n"),
        case("null document", "~\n"),
        case("explicit null", "null\n"),
        case("empty mapping", "{}\n"),
        case("empty list", "[]\n"),
        case("a lone scalar", "42\n"),
        case("a lone string", "Chaos\n"),
        case("a lone boolean", "true\n"),
    ]);
}

#[test]
fn binary_input_is_reported() {
    let mut invalid_utf8_inside = BASE.as_bytes().to_vec();
    invalid_utf8_inside.extend_from_slice(b"  seed: \xc3\x28\n");
    let mut nul_inside = BASE.as_bytes().to_vec();
    nul_inside.extend_from_slice(b"  seed: 1\0\n");
    let all_bytes: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    assert_all_rejected(vec![
        case("NUL bytes", vec![0u8; 64]),
        case("a single NUL", vec![0u8]),
        case("invalid UTF-8", vec![0xff, 0xfe, 0xfd]),
        case("lone continuation byte", vec![0x80]),
        case(
            "truncated UTF-8 sequence",
            vec![b'a', b':', b' ', 0xe2, 0x82],
        ),
        case("UTF-16 BOM and text", b"\xff\xfea\0p\0i\0".to_vec()),
        case("invalid UTF-8 inside a manifest", invalid_utf8_inside),
        case("NUL inside a manifest", nul_inside),
        case("every byte value", all_bytes),
        case(
            "ELF header",
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0".to_vec(),
        ),
        case("gzip header", b"\x1f\x8b\x08\0\0\0\0\0\0\x03".to_vec()),
        case("control characters", "\u{1}\u{2}\u{3}\u{7f}"),
        case("BOM then nothing", "\u{feff}"),
    ]);
}

#[test]
fn deep_nesting_is_reported_without_overflowing_the_stack() {
    let depth = 200;
    let flow_map = format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth));
    let flow_list = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let block_map: String = (0..depth)
        .map(|i| format!("{}a:\n", "  ".repeat(i)))
        .collect::<String>()
        + &format!("{}b: 1\n", "  ".repeat(depth));
    let block_list: String = (0..depth)
        .map(|i| format!("{}-\n", "  ".repeat(i)))
        .collect::<String>()
        + &format!("{}- 1\n", "  ".repeat(depth));
    // Deep, but shallow enough for the YAML parser, so the schema walk sees it.
    let deep_in_spec = with_spec(&format!(
        "  faults: {}{}\n",
        "[".repeat(100),
        "]".repeat(100)
    ));
    let deep_in_env = LOCAL.replace("NODES", "1").replace(
        "      ready:",
        &format!(
            "      env: {}x{}\n      ready:",
            "{a: ".repeat(100),
            "}".repeat(100)
        ),
    );
    let deep_unknown = with_spec(&format!(
        "  extra: {}1{}\n",
        "{a: ".repeat(100),
        "}".repeat(100)
    ));
    let deep_metadata = BASE.replace(
        "  name: t\n",
        &format!(
            "  name: t\n  labels: {}x{}\n",
            "{a: ".repeat(100),
            "}".repeat(100)
        ),
    );
    assert_all_rejected(vec![
        case("200-level flow mapping", flow_map.clone()),
        case("200-level flow list", flow_list.clone()),
        case("200-level block mapping", block_map),
        case("200-level block list", block_list),
        case(
            "200-level mapping as spec",
            format!(
                "{}{}\n",
                BASE.replace(
                    "spec:\n  target:\n    statefulSet: etcd\n  duration: 60s\n",
                    "spec: "
                ),
                flow_map
            ),
        ),
        case(
            "200-level list as faults",
            with_spec(&format!("  faults: {flow_list}\n")),
        ),
        case("100-level list in faults", deep_in_spec),
        case("100-level mapping in env", deep_in_env),
        case("100-level mapping in an unknown field", deep_unknown),
        case("100-level mapping in metadata.labels", deep_metadata),
    ]);
}

#[test]
fn huge_strings_are_reported() {
    let big = "x".repeat(5 * 1024 * 1024);
    let braces = "{".repeat(5 * 1024 * 1024);
    let digits = "1".repeat(5 * 1024 * 1024);
    assert_all_rejected(vec![
        case(
            "5 MB metadata.name",
            BASE.replace("name: t", &format!("name: {big}")),
        ),
        case(
            "5 MB statefulSet",
            BASE.replace("statefulSet: etcd", &format!("statefulSet: {big}")),
        ),
        case(
            "5 MB duration",
            BASE.replace("duration: 60s", &format!("duration: {digits}s")),
        ),
        case(
            "5 MB command of braces",
            LOCAL
                .replace("NODES", "3")
                .replace("run {name}", &format!("'{braces}'")),
        ),
        case(
            "5 MB fault name",
            with_spec(&format!("  faults: [{{podKill: {{}}, name: {big}}}]\n")),
        ),
        case(
            "5 MB rate",
            with_spec(&format!(
                "  faults: [{{bandwidth: {{rate: {digits}mbit}}, duration: 1s}}]\n"
            )),
        ),
        case(
            "5 MB subnet",
            LOCAL.replace("NODES", "3").replace(
                "      ready:",
                &format!("      subnet: {digits}\n      ready:"),
            ),
        ),
        case(
            "5 MB http path",
            with_spec(&format!(
                "  workload:\n    client: http\n    port: 1\n    model: register\n    http:\n      read: {{method: GET, path: /{big}}}\n      write: {{method: PUT, path: /k}}\n"
            )),
        ),
        case(
            "5 MB unterminated quoted string",
            format!("{BASE}  seed: \"{big}\n"),
        ),
    ]);
}

#[test]
fn huge_and_special_numbers_are_reported() {
    let mut cases = Vec::new();
    for value in [
        "99999999999999999999999",
        "-99999999999999999999999",
        "1e400",
        "-1e400",
        "1e-400",
        ".nan",
        ".NaN",
        ".inf",
        "-.inf",
        "-0",
        "0",
        "2147483648",
        "-2147483649",
        "9223372036854775808",
        "18446744073709551616",
        "1.0e1",
        "33",
    ] {
        cases.push(case(&format!("nodes: {value}"), local_nodes(value)));
    }
    for value in [
        "99999999999999999999999",
        "-99999999999999999999999",
        "1e400",
        ".nan",
        ".inf",
        "-.inf",
        "1.5",
        "9223372036854775808",
    ] {
        cases.push(case(
            &format!("seed: {value}"),
            with_spec(&format!("  seed: {value}\n")),
        ));
    }
    for value in [
        "1e400",
        "-1e400",
        ".nan",
        ".inf",
        "-.inf",
        "-0",
        "0",
        "1e-400",
        "100.0000000001",
    ] {
        cases.push(case(
            &format!("loss.percent: {value}"),
            with_spec(&format!(
                "  faults: [{{loss: {{percent: {value}}}, duration: 1s}}]\n"
            )),
        ));
    }
    for value in ["99999999999999999999999", "1e400", ".nan", "-0"] {
        cases.push(case(
            &format!("workload.keys: {value}"),
            with_spec(&format!("  workload: {{client: etcd, keys: {value}}}\n")),
        ));
        cases.push(case(&format!("targets.value: {value}"), with_spec(&format!("  faults: [{{pause: {{targets: {{mode: fixed, value: {value}}}}}, duration: 1s}}]\n"))));
    }
    for value in [".nan", ".inf", "-.inf", "1e400", "-0.0000001", "1.0000001"] {
        cases.push(case(
            &format!("minAvailability: {value}"),
            with_spec(&format!(
                "  availability: {{tcp: {{port: 1}}}}\n  assertions: {{minAvailability: {value}}}\n"
            )),
        ));
    }
    for value in [
        "99999999999999999999999h",
        "9999999999999s",
        "24.0000000001h",
        "0.0000000001ms",
        "1e3s",
        "0x10s",
        "1_000s",
        "inf s",
        "NaNs",
    ] {
        cases.push(case(
            &format!("duration: {value}"),
            BASE.replace("duration: 60s", &format!("duration: \"{value}\"")),
        ));
    }
    assert_all_rejected(cases);
}

#[test]
fn alias_bombs_are_reported() {
    // Billion-laughs style: 9^6 ≈ 530 000 leaves if fully expanded; the parser must refuse or the
    // validator must stay bounded, and either way say something is wrong.
    let mut lol = with_spec("  lol0: &a0 [x, x, x, x, x, x, x, x, x]\n");
    for i in 1..=5 {
        lol.push_str(&format!(
            "  lol{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(", ")
        ));
    }
    // The same bomb hidden in metadata, which the schema walk does not enter.
    let mut meta = String::from(
        "apiVersion: schism.dev/v1alpha1\nkind: Chaos\nmetadata:\n  name: t\n  annotations:\n    a0: &a0 [x, x, x, x, x, x, x, x, x]\n",
    );
    for i in 1..=5 {
        meta.push_str(&format!(
            "    a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(", ")
        ));
    }
    meta.push_str("spec:\n  target: {statefulSet: etcd}\n  duration: 60s\n");
    // Aliases used as keys and self-referencing anchors.
    let alias_key = with_spec("  k: &k faults\n  *k : []\n");
    assert_all_rejected(vec![
        case("alias bomb in spec", lol),
        case("alias bomb in metadata", meta),
        case("alias used as a key", alias_key),
        case(
            "alias to an undefined anchor",
            with_spec("  faults: *nowhere\n"),
        ),
        case(
            "anchor on the whole document used inside it",
            "&doc {apiVersion: schism.dev/v1alpha1, kind: Chaos, spec: *doc}\n",
        ),
    ]);
}

#[test]
fn tags_and_odd_keys_are_reported() {
    assert_all_rejected(vec![
        case("!!binary seed", with_spec("  seed: !!binary aGVsbG8=\n")),
        case(
            "!!binary duration",
            BASE.replace("duration: 60s", "duration: !!binary NjBz"),
        ),
        case(
            "custom tag on an object",
            with_spec("  workload: !custom {client: etcd}\n"),
        ),
        case("custom tag on the document", format!("!chaos\n{BASE}")),
        case("!!str on an integer field", local_nodes("!!str 3")),
        case(
            "!!float on a duration",
            BASE.replace("duration: 60s", "duration: !!float 60"),
        ),
        case("!!set", with_spec("  faults: !!set {a, b}\n")),
        case("!!omap", with_spec("  faults: !!omap [a: 1]\n")),
        case("!!timestamp", with_spec("  seed: !!timestamp 2001-12-14\n")),
        case(
            "verbatim tag",
            with_spec("  seed: !<tag:yaml.org,2002:str> x\n"),
        ),
        case(
            "%TAG directive",
            format!("%TAG ! tag:example.com,2000:\n---\n{BASE}  seed: !x 1\n"),
        ),
        case(
            "non-string key at the top level",
            format!("? [a, b]\n: 1\n{BASE}"),
        ),
        case("null key", with_spec("  ~: 1\n")),
        case("mapping key", with_spec("  ? {a: b}\n  : 1\n")),
        case("list key", with_spec("  ? [a, b]\n  : 1\n")),
        case("integer key", with_spec("  1: x\n")),
        case("boolean key", with_spec("  true: x\n")),
        case("float key", with_spec("  1.5: x\n")),
        case("empty key", with_spec("  \"\": x\n")),
        case(
            "merge key",
            BASE.replace("statefulSet: etcd", "<<: {statefulSet: etcd}"),
        ),
        case("duplicate key", with_spec("  duration: 30s\n")),
        case(
            "non-string key in env",
            LOCAL
                .replace("NODES", "1")
                .replace("      ready:", "      env: {1: a, ~: b}\n      ready:"),
        ),
        case(
            "empty env key",
            LOCAL
                .replace("NODES", "1")
                .replace("      ready:", "      env: {\"\": a}\n      ready:"),
        ),
    ]);
}

/// A tiny deterministic xorshift64* generator, so that a failure is reproducible from its seed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Bytes that are meaningful to YAML, numbers and templates, and a few that are hostile.
const INTERESTING_BYTES: &[u8] = b"{}[]:,-#&*!|>'\"%@`?\n\t \\0123456789.e+~\0\x7f\xff\xc3";
/// Tokens spliced in at random positions.
const INTERESTING_TOKENS: &[&str] = &[
    "",
    "0",
    "-1",
    "1e400",
    ".nan",
    ".inf",
    "99999999999999999999999",
    "~",
    "null",
    "[]",
    "{}",
    "&a ",
    "*a",
    "!!binary ",
    "!custom ",
    "---\n",
    "...\n",
    "? ",
    ": ",
    "- ",
    "0s",
    "25h",
    "1h30m",
    "{name}",
    "{{",
    "}}",
    "{peers}",
    "groups",
    "\u{feff}",
    "é",
    "\u{10ffff}",
    "🦀",
    "<<: ",
    "%YAML 1.2\n",
];

fn insert_bytes(v: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = v.split_off(at);
    v.extend_from_slice(bytes);
    v.extend(tail);
}

/// One random byte- or line-level change of `input`.
fn mutate(rng: &mut XorShift, input: &mut Vec<u8>) {
    let len = input.len();
    match rng.below(12) {
        // Flip one bit of a byte.
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        // Replace a byte.
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = *rng.pick(INTERESTING_BYTES);
        }
        // Insert a byte.
        2 => {
            let i = rng.below(len + 1);
            input.insert(i, *rng.pick(INTERESTING_BYTES));
        }
        // Delete a run of bytes.
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below(16usize.min(len - i));
            input.drain(i..i + n);
        }
        // Splice in a token.
        4 => {
            let i = rng.below(len + 1);
            let token = rng.pick(INTERESTING_TOKENS).as_bytes();
            insert_bytes(input, i, token);
        }
        // Truncate.
        5 if len > 0 => input.truncate(rng.below(len)),
        // Line-level changes.
        _ => {
            let text = input.clone();
            let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let n = lines.len();
            match rng.below(6) {
                0 => {
                    let i = rng.below(n);
                    let line = lines[i].clone();
                    lines.insert(i, line);
                }
                1 if n > 1 => {
                    lines.remove(rng.below(n));
                }
                2 => {
                    let (a, b) = (rng.below(n), rng.below(n));
                    lines.swap(a, b);
                }
                3 => {
                    // Indent or dedent a line by one or two spaces.
                    let i = rng.below(n);
                    if rng.below(2) == 0 {
                        insert_bytes(&mut lines[i], 0, b"  ");
                    } else {
                        let strip = lines[i].iter().take(2).take_while(|b| **b == b' ').count();
                        lines[i].drain(..strip);
                    }
                }
                4 => {
                    // Replace a line's value with a token.
                    let i = rng.below(n);
                    if let Some(colon) = lines[i].iter().position(|b| *b == b':') {
                        lines[i].truncate(colon + 1);
                        lines[i].push(b' ');
                        lines[i].extend_from_slice(rng.pick(INTERESTING_TOKENS).as_bytes());
                    }
                }
                _ => {
                    // Copy a line to a random other place, bringing a field where it does not belong.
                    let (a, b) = (rng.below(n), rng.below(n));
                    let line = lines[a].clone();
                    lines.insert(b, line);
                }
            }
            *input = lines.join(&b'\n');
        }
    }
}

fn valid_corpus() -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(path);
            }
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    walk(&root.join("examples"), &mut paths);
    walk(&root.join("tests/valid"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

#[test]
fn random_mutations_of_valid_manifests_never_panic() {
    const MUTANTS: usize = 2000;
    const SEED: u64 = 0x5eed_c4a0_5c41_5e15;
    let corpus = valid_corpus();
    assert!(!corpus.is_empty(), "no valid manifest to mutate");
    let mut rng = XorShift(SEED);
    let mut panics = Vec::new();
    let mut rejected = 0usize;
    for n in 0..MUTANTS {
        let (path, original) = &corpus[n % corpus.len()];
        let mut input = original.clone();
        let edits = 1 + rng.below(4);
        for _ in 0..edits {
            mutate(&mut rng, &mut input);
        }
        match validate_catching(&input) {
            Ok(reports) => {
                if problem_count(&reports) > 0 {
                    rejected += 1;
                }
            }
            Err(panic) => {
                let dump = std::env::temp_dir().join(format!("schism-mutant-{n}.yaml"));
                let _ = fs::write(&dump, &input);
                panics.push(format!(
                    "mutant {n} of {} ({edits} edits, input saved to {}): {panic}",
                    path.display(),
                    dump.display()
                ));
            }
        }
    }
    assert!(
        panics.is_empty(),
        "{} of {MUTANTS} mutants panicked (seed {SEED:#x}):\n{}",
        panics.len(),
        panics.join("\n")
    );
    // The mutations must actually reach the validator's error paths.
    assert!(
        rejected > MUTANTS / 4,
        "only {rejected} of {MUTANTS} mutants were rejected; the mutator is too timid"
    );
}
