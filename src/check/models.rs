//! Sequential specifications: what a single copy of the system would answer.
//!
//! Each model is a pure `init` plus `step(state, call) -> Option<new state>` ([`ModelKind::init`],
//! [`ModelKind::step`]); `None` means the call's recorded result is impossible in that state.
//! The search does not run these directly: [`KeyMachine`] and the [`Machine`]s below compile
//! the same rules onto interned `u32` states, so a step is an integer compare or a memo lookup
//! and never allocates. A unit test holds the two in agreement.

use std::fmt;
use std::str::FromStr;

use rustc_hash::FxHashMap;

use super::history::{Call, Value};

/// The sequential specification a history is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// A register with `read` and `write` (`get`/`put` accepted as synonyms). Starts as `nil`.
    Register,
    /// A register with `read`, `write` and compare-and-set `cas`. Starts as `nil`.
    CasRegister,
    /// A key-value store of strings with `get`, `put` and `append` (`read`/`write` accepted as
    /// synonyms). Every key starts as the empty string, and a missing key reads as `""`: a
    /// `nil` read and a `""` read are the same observation.
    Kv,
}

impl ModelKind {
    /// The model's name on the command line and in native headers.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Register => "register",
            ModelKind::CasRegister => "cas-register",
            ModelKind::Kv => "kv",
        }
    }

    /// The state of every key before any operation.
    pub fn init(self) -> Value {
        match self {
            ModelKind::Register | ModelKind::CasRegister => Value::Nil,
            ModelKind::Kv => Value::Str(String::new()),
        }
    }

    /// Checks that the model has this function and that its values have the right types.
    pub fn accepts(self, call: &Call) -> Result<(), String> {
        let string_only = |v: &Value, what: &str| match v {
            Value::Str(_) => Ok(()),
            Value::Nil if what == "read" => Ok(()),
            other => Err(format!(
                "the kv model holds strings, but this {what} has the value {other}"
            )),
        };
        match (self, call) {
            (ModelKind::Kv, Call::Read { value } | Call::Get { value }) => match value {
                Some(v) => string_only(v, "read"),
                None => Ok(()),
            },
            (ModelKind::Kv, Call::Write { value } | Call::Put { value }) => {
                string_only(value, "write")
            }
            (ModelKind::Kv, Call::Append { value }) => string_only(value, "append"),
            (ModelKind::Kv, Call::Cas { .. }) => {
                Err("the kv model has no cas; use --model cas-register".to_string())
            }
            (_, Call::Append { .. }) => Err(format!(
                "the {} model has no append; use --model kv",
                self.name()
            )),
            (ModelKind::Register, Call::Cas { .. }) => {
                Err("the register model has no cas; use --model cas-register".to_string())
            }
            _ => Ok(()),
        }
    }

    /// The pure sequential specification of one key: the state after `call` runs in `state`,
    /// or `None` if the call's recorded result cannot happen in `state`. A result that is not
    /// known (`None` in the [`Call`]) matches any state.
    pub fn step(self, state: &Value, call: &Call) -> Option<Value> {
        let kv = self == ModelKind::Kv;
        // In the kv model "absent" and "" are one state (see the variant's doc).
        let norm = |v: &Value| -> Value {
            match v {
                Value::Nil if kv => Value::Str(String::new()),
                other => other.clone(),
            }
        };
        match call {
            Call::Read { value } | Call::Get { value } => match value {
                None => Some(state.clone()),
                Some(v) if norm(v) == *state => Some(state.clone()),
                Some(_) => None,
            },
            Call::Write { value } | Call::Put { value } => Some(norm(value)),
            Call::Cas { from, to, swapped } => {
                let holds = state == from;
                match (holds, swapped) {
                    (true, Some(true) | None) => Some(to.clone()),
                    (false, Some(false) | None) => Some(state.clone()),
                    _ => None,
                }
            }
            Call::Append { value } => match (state, value) {
                (Value::Str(s), Value::Str(a)) => Some(Value::Str(format!("{s}{a}"))),
                (Value::Nil, Value::Str(a)) => Some(Value::Str(a.clone())),
                _ => None,
            },
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ModelKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "register" => Ok(ModelKind::Register),
            "cas-register" | "etcd-cas-register" => Ok(ModelKind::CasRegister),
            "kv" | "kv-get-put-append" => Ok(ModelKind::Kv),
            other => Err(format!(
                "unknown model {other:?}: expected register, cas-register or kv"
            )),
        }
    }
}

/// A call compiled onto interned value ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum KeyStep {
    /// Observed this value.
    Read(u32),
    /// Wrote this value.
    Write(u32),
    /// Compare-and-set with a known or unknown result.
    Cas {
        from: u32,
        to: u32,
        swapped: Option<bool>,
    },
    /// Appended this string (a value id).
    Append(u32),
}

/// Interned values and the compiled step of one key's specification.
#[derive(Debug, Default)]
pub(crate) struct KeyMachine {
    values: Vec<Value>,
    ids: FxHashMap<Value, u32>,
    init: u32,
    /// (state, appended string) -> state: an append allocates a string the first time only.
    appends: FxHashMap<(u32, u32), u32>,
    /// Strings that only grow by appends (the kv model), as opposed to registers.
    kv: bool,
    /// The one state standing for every value that no operation reads or compares with,
    /// once [`KeyMachine::merge_unobserved`] ran.
    unobserved: Option<u32>,
}

impl KeyMachine {
    pub(crate) fn new(model: ModelKind) -> Self {
        let mut m = KeyMachine {
            kv: model == ModelKind::Kv,
            ..KeyMachine::default()
        };
        m.init = m.intern(model.init());
        m
    }

    /// Number of producer classes (see [`Machine::producer_class`]) of one key. Registers have
    /// one class per value, so it is only meaningful once every call is compiled.
    pub(crate) fn classes(&self) -> u32 {
        if self.kv { 1 } else { self.values.len() as u32 }
    }

    /// The class of states `op` can produce that a blocked operation may be waiting for:
    /// for a register the value it may write, for kv any put (appends only extend a value).
    pub(crate) fn producer_class(&self, op: KeyStep) -> Option<u32> {
        match (self.kv, op) {
            (true, KeyStep::Write(_)) => Some(0),
            (true, _) => None,
            (false, KeyStep::Write(v)) => Some(v),
            (false, KeyStep::Cas { to, swapped, .. }) if swapped != Some(false) => Some(to),
            (false, _) => None,
        }
    }

    /// Which operations with an unknown outcome, placed right before `op` in `state`, could
    /// make a difference to it (see [`Want`]).
    pub(crate) fn wants(&self, state: u32, op: KeyStep) -> Want {
        match (self.kv, op) {
            (_, KeyStep::Write(_)) => Want::Nothing,
            (false, KeyStep::Read(v)) if v != state => Want::Class(v),
            (
                false,
                KeyStep::Cas {
                    from,
                    swapped: Some(true) | None,
                    ..
                },
            ) if from != state => Want::Class(from),
            (
                false,
                KeyStep::Cas {
                    from,
                    swapped: Some(false) | None,
                    ..
                },
            ) if from == state => Want::Any,
            (false, _) => Want::Nothing,
            (true, KeyStep::Read(v)) if v == state => Want::Nothing,
            (true, _) => Want::Any,
        }
    }

    /// If `op` cannot succeed in `state`, nor in any state reachable without an operation of
    /// the returned class, that class.
    pub(crate) fn needs(&self, state: u32, op: KeyStep) -> Option<u32> {
        match op {
            KeyStep::Read(v) if v != state => {
                if !self.kv {
                    return Some(v);
                }
                // Appends keep the current value as a prefix: a read of a value that does not
                // start with it needs a put first.
                match (&self.values[state as usize], &self.values[v as usize]) {
                    (Value::Str(cur), Value::Str(want)) if want.starts_with(cur.as_str()) => None,
                    _ => Some(0),
                }
            }
            KeyStep::Cas {
                from,
                swapped: Some(true),
                ..
            } if from != state && !self.kv => Some(from),
            _ => None,
        }
    }

    /// See [`Machine::trigger`]: a register's CAS changes the register only from `from`.
    pub(crate) fn trigger(&self, op: KeyStep) -> Option<u32> {
        match (self.kv, op) {
            (false, KeyStep::Cas { from, .. }) => Some(from),
            _ => None,
        }
    }

    /// See [`Machine::holding`]: a register's classes are its values, kv has one class.
    pub(crate) fn holding(&self, value: u32) -> u32 {
        if self.kv { 0 } else { value }
    }

    pub(crate) fn init(&self) -> u32 {
        self.init
    }

    pub(crate) fn intern(&mut self, v: Value) -> u32 {
        if let Some(&id) = self.ids.get(&v) {
            return id;
        }
        let id = self.values.len() as u32;
        self.values.push(v.clone());
        self.ids.insert(v, id);
        id
    }

    /// [`KeyMachine::intern`] of a borrowed value: copied only when it is new.
    fn intern_ref(&mut self, v: &Value) -> u32 {
        match self.ids.get(v) {
            Some(&id) => id,
            None => self.intern(v.clone()),
        }
    }

    pub(crate) fn value(&self, id: u32) -> &Value {
        &self.values[id as usize]
    }

    /// A state as people read it.
    pub(crate) fn render(&self, id: u32) -> String {
        if self.unobserved == Some(id) {
            "a value no operation reads or compares with".to_string()
        } else {
            self.value(id).to_string()
        }
    }

    /// Makes every register value that no step reads or compares with one state, and
    /// rewrites the steps that write such values to write that state.
    ///
    /// Sound and complete: a register step looks at the state only to compare it with a
    /// value the step names (a read's result, a CAS's expected value), so two states that no
    /// step names answer every step alike, and so do the states after them. Merging them
    /// turns many distinct search nodes into one: a write nobody reads, timed out or not,
    /// leaves the same state. The initial value keeps its own state.
    pub(crate) fn merge_unobserved(&mut self, steps: &mut [KeyStep]) {
        if self.kv {
            return;
        }
        let mut observed = vec![false; self.values.len()];
        observed[self.init as usize] = true;
        for step in steps.iter() {
            match *step {
                KeyStep::Read(v) | KeyStep::Cas { from: v, .. } => observed[v as usize] = true,
                _ => {}
            }
        }
        let unobserved = self.values.len() as u32;
        let mut used = false;
        for step in steps.iter_mut() {
            match step {
                KeyStep::Write(v) | KeyStep::Cas { to: v, .. } if !observed[*v as usize] => {
                    *v = unobserved;
                    used = true;
                }
                _ => {}
            }
        }
        if used {
            // A placeholder nobody can name: it is in `values` but not in `ids`.
            self.values.push(Value::Nil);
            self.unobserved = Some(unobserved);
        }
    }

    /// The merged state of [`KeyMachine::merge_unobserved`], if any.
    pub(crate) fn unobserved(&self) -> Option<u32> {
        self.unobserved
    }

    /// Compiles a call the model accepts (see [`ModelKind::accepts`]). Reads with an unknown
    /// result must have been dropped before: they constrain nothing.
    pub(crate) fn compile(&mut self, model: ModelKind, call: &Call) -> KeyStep {
        let kv = model == ModelKind::Kv;
        let id = |m: &mut Self, v: &Value| match v {
            Value::Nil if kv => m.intern(Value::Str(String::new())),
            other => m.intern_ref(other),
        };
        match call {
            Call::Read { value } | Call::Get { value } => {
                KeyStep::Read(id(self, value.as_ref().unwrap_or(&Value::Nil)))
            }
            Call::Write { value } | Call::Put { value } => KeyStep::Write(id(self, value)),
            Call::Cas { from, to, swapped } => KeyStep::Cas {
                from: id(self, from),
                to: id(self, to),
                swapped: *swapped,
            },
            Call::Append { value } => KeyStep::Append(id(self, value)),
        }
    }

    #[inline]
    pub(crate) fn step(&mut self, state: u32, op: KeyStep) -> Option<u32> {
        match op {
            KeyStep::Read(v) => (state == v).then_some(state),
            KeyStep::Write(v) => Some(v),
            KeyStep::Cas { from, to, swapped } => match (state == from, swapped) {
                (true, Some(true) | None) => Some(to),
                (false, Some(false) | None) => Some(state),
                _ => None,
            },
            KeyStep::Append(a) => {
                if let Some(&s) = self.appends.get(&(state, a)) {
                    return Some(s);
                }
                let joined = match (&self.values[state as usize], &self.values[a as usize]) {
                    (Value::Str(s), Value::Str(x)) => format!("{s}{x}"),
                    (Value::Nil, Value::Str(x)) => x.clone(),
                    // `accepts` admits string appends only.
                    _ => return None,
                };
                let s = self.intern(Value::Str(joined));
                self.appends.insert((state, a), s);
                Some(s)
            }
        }
    }
}

/// What an operation wants from an operation with an unknown outcome placed right before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Want {
    /// Nothing: whatever comes right before it, that could as well come later or never.
    Nothing,
    /// A producer of this class (for a register: a write of this value).
    Class(u32),
    /// Any operation on the same key (see [`Machine::group`]).
    Any,
}

/// What the search drives: states and operations are small integers.
pub(crate) trait Machine {
    /// The initial state.
    fn init(&mut self) -> u32;
    /// The state after operation `op` (an index into the partition) runs in `state`.
    fn step(&mut self, state: u32, op: u32) -> Option<u32>;
    /// A human-readable rendering of a state, for counterexamples.
    fn render(&self, state: u32) -> String;
    /// True if `op` never changes the state (a read, or a CAS whose compare failed).
    fn is_read_only(&self, op: u32) -> bool;
    /// Number of producer classes.
    fn classes(&self) -> u32;
    /// The producer class of `op`, if it has one: operations of a class are the only ones
    /// that can unblock an operation that [`Machine::needs`] that class.
    fn producer_class(&self, op: u32) -> Option<u32>;
    /// `Some(class)` if `op` cannot succeed now, nor after any sequence of operations outside
    /// that class. `None` is always a safe answer.
    fn needs(&self, state: u32, op: u32) -> Option<u32>;
    /// What `op` wants from an unknown operation right before it, in `state`. `Want::Any`
    /// is always a safe answer.
    fn wants(&self, state: u32, op: u32) -> Want;
    /// Operations of different groups commute (different keys).
    fn group(&self, op: u32) -> u32;
    /// For an operation that changes the state only while its key holds one value (a
    /// compare-and-set), the producer class of that value; `None` for one that may change
    /// the state whatever it holds (a write, an append).
    fn trigger(&self, op: u32) -> Option<u32>;
    /// The producer class of what `group`'s key holds in `state`: operations whose
    /// [`Machine::trigger`] it is are the ones that may change that key now.
    fn holding(&self, state: u32, group: u32) -> u32;
    /// Whether the search should first try what the most urgent pending operation asks for.
    /// An order of trying only; it pays for one register, whose reads name the write they
    /// need, and can cost dearly where many writes could satisfy a read (kv, many keys).
    fn urgent_first(&self) -> bool {
        false
    }
}

impl KeyStep {
    fn is_read_only(self) -> bool {
        matches!(
            self,
            KeyStep::Read(_)
                | KeyStep::Cas {
                    swapped: Some(false),
                    ..
                }
        )
    }
}

/// One key: the state is the key's value id.
#[derive(Debug)]
pub(crate) struct SingleKey {
    pub(crate) km: KeyMachine,
    pub(crate) ops: Vec<KeyStep>,
}

impl Machine for SingleKey {
    fn init(&mut self) -> u32 {
        self.km.init()
    }

    #[inline]
    fn step(&mut self, state: u32, op: u32) -> Option<u32> {
        let step = self.ops[op as usize];
        self.km.step(state, step)
    }

    fn render(&self, state: u32) -> String {
        self.km.render(state)
    }

    fn is_read_only(&self, op: u32) -> bool {
        self.ops[op as usize].is_read_only()
    }

    fn classes(&self) -> u32 {
        self.km.classes()
    }

    fn producer_class(&self, op: u32) -> Option<u32> {
        self.km.producer_class(self.ops[op as usize])
    }

    #[inline]
    fn needs(&self, state: u32, op: u32) -> Option<u32> {
        self.km.needs(state, self.ops[op as usize])
    }

    #[inline]
    fn wants(&self, state: u32, op: u32) -> Want {
        self.km.wants(state, self.ops[op as usize])
    }

    fn group(&self, _op: u32) -> u32 {
        0
    }

    fn trigger(&self, op: u32) -> Option<u32> {
        self.km.trigger(self.ops[op as usize])
    }

    fn holding(&self, state: u32, _group: u32) -> u32 {
        self.km.holding(state)
    }

    fn urgent_first(&self) -> bool {
        !self.km.kv
    }
}

/// Many keys checked together (no partitioning): the state is an interned vector holding
/// one value id per key.
#[derive(Debug)]
pub(crate) struct MultiKey {
    pub(crate) km: KeyMachine,
    pub(crate) keys: Vec<String>,
    /// (key index, step) per operation.
    pub(crate) ops: Vec<(u32, KeyStep)>,
    states: Vec<Box<[u32]>>,
    ids: FxHashMap<Box<[u32]>, u32>,
    /// (state, op) -> state for state-changing operations.
    memo: FxHashMap<(u32, u32), Option<u32>>,
    /// Producer classes per key (fixed once all calls are compiled).
    key_classes: u32,
}

impl MultiKey {
    pub(crate) fn new(km: KeyMachine, keys: Vec<String>, ops: Vec<(u32, KeyStep)>) -> Self {
        let init: Box<[u32]> = vec![km.init(); keys.len()].into_boxed_slice();
        let mut ids = FxHashMap::default();
        ids.insert(init.clone(), 0);
        MultiKey {
            key_classes: km.classes(),
            km,
            keys,
            ops,
            states: vec![init],
            ids,
            memo: FxHashMap::default(),
        }
    }
}

impl Machine for MultiKey {
    fn init(&mut self) -> u32 {
        0
    }

    #[inline]
    fn step(&mut self, state: u32, op: u32) -> Option<u32> {
        let (key, step) = self.ops[op as usize];
        let cur = self.states[state as usize][key as usize];
        if let KeyStep::Read(v) = step {
            return (cur == v).then_some(state);
        }
        if let Some(&r) = self.memo.get(&(state, op)) {
            return r;
        }
        let r = match self.km.step(cur, step) {
            None => None,
            Some(next) if next == cur => Some(state),
            Some(next) => {
                let mut v = self.states[state as usize].clone();
                v[key as usize] = next;
                Some(match self.ids.get(&v) {
                    Some(&id) => id,
                    None => {
                        let id = self.states.len() as u32;
                        self.states.push(v.clone());
                        self.ids.insert(v, id);
                        id
                    }
                })
            }
        };
        self.memo.insert((state, op), r);
        r
    }

    fn render(&self, state: u32) -> String {
        let parts: Vec<String> = self
            .keys
            .iter()
            .zip(self.states[state as usize].iter())
            .map(|(k, &v)| format!("{k}: {}", self.km.value(v)))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }

    fn is_read_only(&self, op: u32) -> bool {
        self.ops[op as usize].1.is_read_only()
    }

    // Classes are per key: (key, class of that key).
    fn classes(&self) -> u32 {
        self.keys.len() as u32 * self.key_classes
    }

    fn producer_class(&self, op: u32) -> Option<u32> {
        let (key, step) = self.ops[op as usize];
        self.km
            .producer_class(step)
            .map(|c| key * self.key_classes + c)
    }

    #[inline]
    fn needs(&self, state: u32, op: u32) -> Option<u32> {
        let (key, step) = self.ops[op as usize];
        let cur = self.states[state as usize][key as usize];
        self.km.needs(cur, step).map(|c| key * self.key_classes + c)
    }

    #[inline]
    fn wants(&self, state: u32, op: u32) -> Want {
        let (key, step) = self.ops[op as usize];
        let cur = self.states[state as usize][key as usize];
        match self.km.wants(cur, step) {
            Want::Class(c) => Want::Class(key * self.key_classes + c),
            other => other,
        }
    }

    fn group(&self, op: u32) -> u32 {
        self.ops[op as usize].0
    }

    fn trigger(&self, op: u32) -> Option<u32> {
        let (key, step) = self.ops[op as usize];
        self.km.trigger(step).map(|c| key * self.key_classes + c)
    }

    fn holding(&self, state: u32, group: u32) -> u32 {
        let cur = self.states[state as usize][group as usize];
        group * self.key_classes + self.km.holding(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(x.to_string())
    }

    #[test]
    fn cas_register_compare_failure_is_an_observation() {
        let m = ModelKind::CasRegister;
        let cas = |swapped| Call::Cas {
            from: Value::Int(1),
            to: Value::Int(2),
            swapped,
        };
        assert_eq!(
            m.step(&Value::Int(1), &cas(Some(true))),
            Some(Value::Int(2))
        );
        assert_eq!(m.step(&Value::Int(3), &cas(Some(true))), None);
        assert_eq!(
            m.step(&Value::Int(3), &cas(Some(false))),
            Some(Value::Int(3))
        );
        assert_eq!(m.step(&Value::Int(1), &cas(Some(false))), None);
        assert_eq!(m.step(&Value::Int(1), &cas(None)), Some(Value::Int(2)));
        assert_eq!(m.step(&Value::Nil, &cas(None)), Some(Value::Nil));
    }

    #[test]
    fn kv_treats_missing_and_empty_as_one_state() {
        let m = ModelKind::Kv;
        let get_nil = Call::Get {
            value: Some(Value::Nil),
        };
        assert_eq!(m.step(&m.init(), &get_nil), Some(s("")));
        let app = Call::Append { value: s("x1") };
        assert_eq!(m.step(&s("a"), &app), Some(s("ax1")));
    }

    #[test]
    fn compiled_key_machine_agrees_with_the_pure_specification() {
        // Every call over a small value domain, from every reachable state.
        for model in [ModelKind::Register, ModelKind::CasRegister, ModelKind::Kv] {
            let vals: Vec<Value> = if model == ModelKind::Kv {
                vec![s(""), s("a"), s("b"), s("ab")]
            } else {
                vec![Value::Nil, Value::Int(1), Value::Int(2)]
            };
            let mut calls = Vec::new();
            for v in &vals {
                calls.push(Call::Read {
                    value: Some(v.clone()),
                });
                if *v != Value::Nil {
                    calls.push(Call::Write { value: v.clone() });
                }
                if model == ModelKind::Kv && *v != s("") {
                    calls.push(Call::Append { value: v.clone() });
                }
                if model == ModelKind::CasRegister {
                    for w in &vals {
                        for swapped in [Some(true), Some(false), None] {
                            calls.push(Call::Cas {
                                from: v.clone(),
                                to: w.clone(),
                                swapped,
                            });
                        }
                    }
                }
            }
            let mut km = KeyMachine::new(model);
            let compiled: Vec<KeyStep> = calls.iter().map(|c| km.compile(model, c)).collect();
            for state in &vals {
                let sid = km.intern(state.clone());
                for (call, step) in calls.iter().zip(&compiled) {
                    let pure = model.step(state, call);
                    let fast = km.step(sid, *step).map(|id| km.value(id).clone());
                    assert_eq!(pure, fast, "{model} {state} {call:?}");
                }
            }
        }
    }
}
