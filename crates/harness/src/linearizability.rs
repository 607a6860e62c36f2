//! A linearizability checker for histories of the key-value API.
//!
//! Each key is an independent register that may be absent: `GET` reads it
//! (a value, or 404), `PUT` sets it, `DELETE` removes it and says whether it
//! existed. A history is linearizable when every operation can be given one
//! instant inside its own invoke..return interval such that, taken in that
//! order, the operations behave like this register starting out absent.
//!
//! The search is Wing & Gong's: repeatedly pick, among the operations not yet
//! placed, one that no other unplaced operation finished before, apply it to
//! the register and recurse, backtracking on a wrong result. As in Lowe's and
//! Horn & Kroening's refinements, a (placed set, register state) pair that was
//! already explored is never explored again, which keeps the search
//! polynomial for histories with bounded concurrency.
//!
//! Operations whose outcome the client never learned (transport error,
//! time-out, 5xx) are handled soundly: a failed read constrains nothing and
//! is dropped; a failed write may have taken effect at any instant after its
//! invocation, or never, so it is placed optionally and never closes the
//! window of another operation.
//!
//! Three reductions keep the search small without losing any valid order
//! (each is argued where it is made): a read the register satisfies is
//! placed at once and alone; a write of unknown outcome is placed only
//! right before an answered operation that needs it; and a configuration
//! that only adds such writes to an explored one is not explored again.
//!
//! When a history fails, the explanation names the operation whose answer
//! ends the shortest failing prefix of the history, with its neighbours.
//!
//! Pure logic, no I/O: the integration tests record the history, this module
//! judges it. Its own tests are in the node's tests/linearizability_checker.rs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::Instant;

/// Nanoseconds since the start of a test's [`Clock`].
pub type Nanos = u64;

/// Explored (placed set, state) pairs per key after which the checker gives
/// up and reports the history as not shown linearizable.
const SEARCH_BUDGET: usize = 3_000_000;

/// Operations listed around the offending one in an explanation.
const CONTEXT_LINES: usize = 30;

/// One shared time origin for every client thread of a test.
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    pub fn start() -> Self {
        Clock(Instant::now())
    }

    /// Nanoseconds elapsed since [`Clock::start`].
    pub fn now(&self) -> Nanos {
        self.0.elapsed().as_nanos() as Nanos
    }
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Get,
    Put(String),
    Delete,
}

/// What the client learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A GET answered: `Some(value)` for 200, `None` for 404.
    Read(Option<String>),
    /// A PUT answered 200.
    Written,
    /// A DELETE answered: `true` for 200 (the key existed), `false` for 404.
    Deleted(bool),
    /// No answer, or one that says nothing about the effect (transport
    /// error, time-out, 5xx): the operation may or may not have happened.
    Unknown,
}

/// One operation of a history, as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub key: String,
    pub client: usize,
    /// The node the request was sent to, when known (shown in explanations).
    pub node: Option<u32>,
    pub call: Call,
    pub outcome: Outcome,
    /// When the client sent the request.
    pub invoked: Nanos,
    /// When the client had the answer (ignored for [`Outcome::Unknown`]).
    pub returned: Nanos,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let call = match &self.call {
            Call::Get => "GET".to_string(),
            Call::Put(value) => format!("PUT {value:?}"),
            Call::Delete => "DELETE".to_string(),
        };
        let outcome = match &self.outcome {
            Outcome::Read(Some(value)) => format!("{value:?}"),
            Outcome::Read(None) => "absent (404)".to_string(),
            Outcome::Written => "ok".to_string(),
            Outcome::Deleted(true) => "deleted (200)".to_string(),
            Outcome::Deleted(false) => "not found (404)".to_string(),
            Outcome::Unknown => "unknown outcome".to_string(),
        };
        let returned = match self.outcome {
            Outcome::Unknown => "open".to_string(),
            _ => millis(self.returned),
        };
        let node = self
            .node
            .map(|id| format!(" at NODE-{id}"))
            .unwrap_or_default();
        write!(
            f,
            "[client {}{node}] {:>10} .. {:>10}  {call} -> {outcome}",
            self.client,
            millis(self.invoked),
            returned
        )
    }
}

fn millis(ns: Nanos) -> String {
    format!("{:.3} ms", ns as f64 / 1e6)
}

/// Why a key's history is not linearizable.
#[derive(Clone, Debug)]
pub struct Violation {
    pub key: String,
    pub explanation: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?}: {}", self.key, self.explanation)
    }
}

/// Checks every key of `history` independently; returns the violation of
/// each key whose history is not linearizable (empty when all are).
pub fn check(history: &[Operation]) -> Vec<Violation> {
    let mut by_key: BTreeMap<&str, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op.clone());
    }
    by_key
        .into_values()
        .filter_map(|ops| check_key(&ops).err())
        .collect()
}

/// Checks the history of one key (every operation must name the same key).
pub fn check_key(ops: &[Operation]) -> Result<(), Violation> {
    let key = ops.first().map(|op| op.key.clone()).unwrap_or_default();
    for op in ops {
        assert_eq!(op.key, key, "check_key got operations on several keys");
        assert!(
            outcome_fits_call(op),
            "malformed operation (outcome does not fit the call): {op}"
        );
    }
    let register = Register::new(ops);
    let all = register.entries(Nanos::MAX);
    match search(&all) {
        (Verdict::Linearizable, _) => Ok(()),
        (Verdict::NotLinearizable | Verdict::OutOfBudget, reached) => Err(Violation {
            key,
            explanation: register.explain(reached),
        }),
    }
}

fn outcome_fits_call(op: &Operation) -> bool {
    matches!(
        (&op.call, &op.outcome),
        (_, Outcome::Unknown)
            | (Call::Get, Outcome::Read(_))
            | (Call::Put(_), Outcome::Written)
            | (Call::Delete, Outcome::Deleted(_))
    )
}

/// Register state: 0 is "absent", `n > 0` the n-th distinct value.
type State = u32;
const ABSENT: State = 0;

/// What an operation does to, or demands of, the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Succeeds only if the register holds this state.
    Read(State),
    Put(State),
    /// `Some(existed)` when the answer is known.
    Delete(Option<bool>),
}

impl Effect {
    fn apply(self, state: State) -> Option<State> {
        match self {
            Effect::Read(seen) => (seen == state).then_some(state),
            Effect::Put(value) => Some(value),
            Effect::Delete(None) => Some(ABSENT),
            Effect::Delete(Some(existed)) => (existed == (state != ABSENT)).then_some(ABSENT),
        }
    }
}

/// An operation prepared for the search.
#[derive(Clone, Debug)]
struct Entry {
    effect: Effect,
    invoked: Nanos,
    /// `Nanos::MAX` for an operation that may take effect at any later time.
    returned: Nanos,
    /// False for a write of unknown outcome, which may be left out.
    required: bool,
}

/// One key's history with its values numbered.
struct Register<'a> {
    ops: &'a [Operation],
    values: HashMap<&'a str, State>,
}

impl<'a> Register<'a> {
    fn new(ops: &'a [Operation]) -> Self {
        let mut values = HashMap::new();
        let mut intern = |value: &'a str| {
            let next = values.len() as State + 1;
            values.entry(value).or_insert(next);
        };
        for op in ops {
            if let Call::Put(value) = &op.call {
                intern(value);
            }
            if let Outcome::Read(Some(value)) = &op.outcome {
                intern(value);
            }
        }
        Register { ops, values }
    }

    /// The entries of the prefix of the history that ends at instant `end`:
    /// operations invoked after it are left out; those still running at
    /// `end` are treated as unanswered (reads dropped, writes optional).
    fn entries(&self, end: Nanos) -> Vec<Entry> {
        let mut entries: Vec<Entry> = self
            .ops
            .iter()
            .filter(|op| op.invoked <= end)
            .filter_map(|op| {
                let answered = op.outcome != Outcome::Unknown && op.returned <= end;
                let effect = match (&op.call, &op.outcome) {
                    (Call::Get, Outcome::Read(seen)) if answered => {
                        Effect::Read(seen.as_deref().map_or(ABSENT, |v| self.values[v]))
                    }
                    (Call::Get, _) => return None,
                    (Call::Put(value), _) => Effect::Put(self.values[value.as_str()]),
                    (Call::Delete, Outcome::Deleted(existed)) if answered => {
                        Effect::Delete(Some(*existed))
                    }
                    (Call::Delete, _) => Effect::Delete(None),
                };
                Some(Entry {
                    effect,
                    invoked: op.invoked,
                    returned: if answered { op.returned } else { Nanos::MAX },
                    required: answered,
                })
            })
            .collect();
        entries.sort_by_key(|entry| entry.invoked);
        entries
    }

    /// Explains a history already found not linearizable: finds the shortest
    /// prefix (cut at the return of an operation) that is not linearizable
    /// and lists the operation whose answer closes it with its neighbours.
    ///
    /// `reached` is how far the failed search got: every prefix that does
    /// have a valid order ends before it, so the search for the shortest
    /// failing prefix starts there and walks back.
    fn explain(&self, reached: Nanos) -> String {
        let mut ends: Vec<Nanos> = self
            .ops
            .iter()
            .filter(|op| op.outcome != Outcome::Unknown)
            .map(|op| op.returned)
            .collect();
        ends.sort_unstable();
        ends.dedup();
        let mut gave_up = false;
        let mut fails = |end: usize| match search(&self.entries(ends[end])).0 {
            Verdict::Linearizable => false,
            Verdict::NotLinearizable => true,
            Verdict::OutOfBudget => {
                gave_up = true;
                true
            }
        };
        // Linearizability is prefix-closed, so the failing prefixes are an
        // upper range of `ends`; `ends.len()` stands for the whole history,
        // known to fail. Find some failing `bad` and passing `good - 1`.
        let near = ends.partition_point(|&end| end < reached);
        let mut bad = if near < ends.len() && fails(near) {
            near
        } else {
            ends.len()
        };
        let mut good = 0;
        let mut step = 1;
        while bad >= step {
            if !fails(bad - step) {
                good = bad - step + 1;
                break;
            }
            bad -= step;
            step *= 2;
        }
        while good < bad {
            let mid = (good + bad) / 2;
            if fails(mid) {
                bad = mid;
            } else {
                good = mid + 1;
            }
        }
        let Some(&end) = ends.get(bad) else {
            return "no order of the operations explains the history \
                    (the checker found no answered operation to blame)"
                .to_string();
        };
        let culprit = self
            .ops
            .iter()
            .find(|op| op.outcome != Outcome::Unknown && op.returned == end)
            .expect("an operation returns at every cut");
        let in_prefix: Vec<&Operation> = self.ops.iter().filter(|op| op.invoked <= end).collect();

        let mut text = format!(
            "not linearizable. The shortest prefix of the history that no order explains \
             ends when this operation returned:\n    {culprit}\n"
        );
        if let Outcome::Read(Some(value)) = &culprit.outcome {
            let writer = self
                .ops
                .iter()
                .find(|op| op.call == Call::Put(value.clone()));
            match writer {
                Some(writer) => {
                    text += &format!("  the value it read was written by:\n    {writer}\n")
                }
                None => text += "  no PUT in the history wrote the value it read\n",
            }
        }
        text += &format!(
            "  that prefix holds {} operations; those nearest to it (by invocation):\n",
            in_prefix.len()
        );
        for op in nearest(&in_prefix, culprit) {
            let marker = if op == culprit { "=>" } else { "  " };
            text += &format!("  {marker}{op}\n");
        }
        if gave_up {
            text +=
                "  (the search budget ran out on some prefix: the cut may be earlier than shown)\n";
        }
        text
    }
}

/// The operations of `prefix` worth showing next to `culprit`: those from the
/// last acknowledged write that finished before it was invoked onward (its
/// concurrent writes and reads included), at most [`CONTEXT_LINES`] of them,
/// nearest first.
fn nearest<'a>(prefix: &[&'a Operation], culprit: &Operation) -> Vec<&'a Operation> {
    let window_start = prefix
        .iter()
        .filter(|op| {
            op.call != Call::Get && op.outcome != Outcome::Unknown && op.returned < culprit.invoked
        })
        .map(|op| op.invoked)
        .max()
        .unwrap_or(0);
    let mut shown: Vec<&Operation> = prefix
        .iter()
        .copied()
        .filter(|op| op.outcome == Outcome::Unknown || op.returned >= window_start)
        .collect();
    shown.sort_by_key(|op| std::cmp::Reverse(op.invoked));
    shown.truncate(CONTEXT_LINES);
    shown.reverse();
    shown
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Linearizable,
    NotLinearizable,
    OutOfBudget,
}

/// A set of entry indices.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Placed(Box<[u64]>);

impl Placed {
    fn new(len: usize) -> Self {
        Placed(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
}

/// The configurations (placed set, register state) already explored.
///
/// The placed answered operations are keyed compactly: all of them before
/// the first unplaced one, plus the few placed beyond it.
///
/// A configuration that differs from an explored one only in having placed
/// more writes of unknown outcome, in the same state, can reach nothing the
/// explored one could not (such a write never closes another operation's
/// window), so it is not explored again.
struct Memo {
    /// Mask of the optional entries.
    optional_mask: Vec<u64>,
    /// Indices of the optional entries.
    optional: Vec<usize>,
    explored: HashMap<(usize, Vec<u64>, State), Vec<Vec<u64>>>,
    size: usize,
}

impl Memo {
    fn new(entries: &[Entry]) -> Self {
        let optional: Vec<usize> = (0..entries.len())
            .filter(|&i| !entries[i].required)
            .collect();
        let mut mask = Placed::new(entries.len());
        for &i in &optional {
            mask.insert(i);
        }
        Memo {
            optional_mask: mask.0.into_vec(),
            optional,
            explored: HashMap::new(),
            size: 0,
        }
    }

    /// Records the configuration; false when it (or one that covers it) was
    /// explored already. `first_open` is the first unplaced answered entry.
    fn first_visit(&mut self, placed: &Placed, first_open: usize, state: State) -> bool {
        let from = first_open / 64;
        let mut beyond: Vec<u64> = placed.0[from..]
            .iter()
            .zip(&self.optional_mask[from..])
            .map(|(word, optional)| word & !optional)
            .collect();
        if let Some(first) = beyond.first_mut() {
            *first &= !((1u64 << (first_open % 64)) - 1);
        }
        while beyond.last() == Some(&0) {
            beyond.pop();
        }
        let mut optional_placed = vec![0u64; self.optional.len().div_ceil(64)];
        for (bit, &i) in self.optional.iter().enumerate() {
            if placed.contains(i) {
                optional_placed[bit / 64] |= 1 << (bit % 64);
            }
        }
        let done = self
            .explored
            .entry((first_open, beyond, state))
            .or_default();
        let covers = |earlier: &Vec<u64>| {
            earlier
                .iter()
                .zip(&optional_placed)
                .all(|(earlier, now)| earlier & !now == 0)
        };
        if done.iter().any(covers) {
            return false;
        }
        done.push(optional_placed);
        self.size += 1;
        true
    }
}

/// One move of the search: place `then`, an answered operation, right after
/// `enabler`, a write of unknown outcome that it needs, if any.
///
/// A write of unknown outcome is only ever placed as an enabler: if it takes
/// effect in some valid order, it can also take effect just before the first
/// answered operation that observes it (its window never closes, and the
/// others' windows only widen), and where none observes it, it can be left
/// out. This keeps such writes from multiplying the search.
#[derive(Clone, Copy, Debug)]
struct Move {
    enabler: Option<usize>,
    then: usize,
}

/// One level of the depth-first search: what has been placed, the register
/// after it, and the moves still to try from there.
struct Frame {
    placed: Placed,
    state: State,
    /// Every required entry before this index is placed.
    first_open: usize,
    required_done: usize,
    moves: Vec<Move>,
    next: usize,
}

/// Wing & Gong search with memoization over `entries` (sorted by
/// invocation). Also returns how far in time it got: the latest instant by
/// which some explored order had placed every operation that returned.
fn search(entries: &[Entry]) -> (Verdict, Nanos) {
    let history = Prepared::new(entries);
    let required = entries.iter().filter(|e| e.required).count();
    let first_open_from = |from: usize, placed: &Placed| {
        (from..entries.len())
            .find(|&i| entries[i].required && !placed.contains(i))
            .unwrap_or(entries.len())
    };
    let mut reached = 0;
    let mut frame = |placed: Placed, state, first_open, required_done| {
        let (moves, deadline) = history.moves(&placed, first_open, state);
        reached = reached.max(deadline);
        Frame {
            moves,
            placed,
            state,
            first_open,
            required_done,
            next: 0,
        }
    };
    let mut memo = Memo::new(entries);
    let start = Placed::new(entries.len());
    let mut stack = vec![frame(start.clone(), ABSENT, first_open_from(0, &start), 0)];
    while let Some(top) = stack.last_mut() {
        if top.required_done == required {
            return (Verdict::Linearizable, Nanos::MAX);
        }
        let Some(&step) = top.moves.get(top.next) else {
            stack.pop();
            continue;
        };
        top.next += 1;
        let mut placed = top.placed.clone();
        let mut state = Some(top.state);
        for i in step.enabler.into_iter().chain([step.then]) {
            state = state.and_then(|state| entries[i].effect.apply(state));
            placed.insert(i);
        }
        let Some(state) = state else {
            continue;
        };
        let first_open = first_open_from(top.first_open, &placed);
        if !memo.first_visit(&placed, first_open, state) {
            continue;
        }
        if memo.size > SEARCH_BUDGET {
            return (Verdict::OutOfBudget, reached);
        }
        let required_done = top.required_done + 1;
        stack.push(frame(placed, state, first_open, required_done));
    }
    (Verdict::NotLinearizable, reached)
}

/// The entries with what the move generator needs to know about them.
struct Prepared<'a> {
    entries: &'a [Entry],
    /// Indices of the entries of unknown outcome.
    optional: Vec<usize>,
    /// Values some read returned.
    read_values: HashSet<State>,
}

impl<'a> Prepared<'a> {
    fn new(entries: &'a [Entry]) -> Self {
        let optional = (0..entries.len())
            .filter(|&i| !entries[i].required)
            .collect();
        let read_values = entries
            .iter()
            .filter_map(|entry| match entry.effect {
                Effect::Read(seen) => Some(seen),
                _ => None,
            })
            .collect();
        Prepared {
            entries,
            optional,
            read_values,
        }
    }

    /// The unplaced entries that may be placed now: those invoked before
    /// every other unplaced entry returned.
    ///
    /// Only a window needs scanning: entries before `first_open` are placed
    /// or optional, and once an entry is invoked after the earliest return
    /// seen so far, so are all later ones, none of which can return earlier.
    /// Also returns the earliest return among the unplaced entries.
    fn open(&self, placed: &Placed, first_open: usize) -> (Vec<usize>, Nanos) {
        let entries = self.entries;
        let mut deadline = Nanos::MAX;
        let mut window = Vec::new();
        for (i, entry) in entries.iter().enumerate().skip(first_open) {
            if entry.invoked > deadline {
                break;
            }
            if !placed.contains(i) {
                deadline = deadline.min(entry.returned);
                window.push(i);
            }
        }
        let open_optional = self
            .optional
            .iter()
            .copied()
            .filter(|&i| i < first_open && !placed.contains(i));
        let open = open_optional
            .chain(window)
            .filter(|&i| entries[i].invoked <= deadline)
            .collect();
        (open, deadline)
    }

    /// The moves worth trying from a configuration, most promising first,
    /// and the earliest return among its unplaced entries.
    fn moves(&self, placed: &Placed, first_open: usize, state: State) -> (Vec<Move>, Nanos) {
        let entries = self.entries;
        let (open, deadline) = self.open(placed, first_open);
        let applies = |i: usize, state: State| entries[i].effect.apply(state).is_some();
        let (required, optional): (Vec<usize>, Vec<usize>) =
            open.into_iter().partition(|&i| entries[i].required);

        // A read the register satisfies now may go first, alone: it changes
        // nothing and only widens the others' windows, so if any order
        // works, one starting with it does.
        if let Some(&read) = required
            .iter()
            .find(|&&i| entries[i].effect == Effect::Read(state))
        {
            let alone = Move {
                enabler: None,
                then: read,
            };
            return (vec![alone], deadline);
        }

        let wanted: Vec<State> = required
            .iter()
            .filter_map(|&i| match entries[i].effect {
                Effect::Read(seen) => Some(seen),
                _ => None,
            })
            .collect();
        let satisfies_a_read = |i: usize| match entries[i].effect {
            Effect::Put(value) => wanted.contains(&value),
            Effect::Delete(_) => wanted.contains(&ABSENT),
            Effect::Read(_) => false,
        };
        let mut moves: Vec<(u8, Nanos, Move)> = Vec::new();
        for &then in &required {
            if applies(then, state) {
                let rank = if satisfies_a_read(then) { 0 } else { 2 };
                let step = Move {
                    enabler: None,
                    then,
                };
                moves.push((rank, entries[then].invoked, step));
                continue;
            }
            for enabler in self.enablers(&optional) {
                let enabled = entries[enabler].effect.apply(state);
                if enabled.is_some_and(|enabled| applies(then, enabled)) {
                    let rank = if matches!(entries[then].effect, Effect::Read(_)) {
                        1
                    } else {
                        3
                    };
                    let step = Move {
                        enabler: Some(enabler),
                        then,
                    };
                    moves.push((rank, entries[then].invoked, step));
                }
            }
        }
        moves.sort_by_key(|&(rank, invoked, _)| (rank, invoked));
        let moves = moves.into_iter().map(|(_, _, step)| step).collect();
        (moves, deadline)
    }

    /// The open writes of unknown outcome worth trying as enablers. Writes
    /// that leave the same state behind are interchangeable (all of them
    /// stay placeable until the end), so only the first of each kind is
    /// offered: one delete, one write of a value nobody read, and every
    /// write of a value someone read.
    fn enablers(&self, optional: &[usize]) -> Vec<usize> {
        let entries = self.entries;
        let first_delete = optional
            .iter()
            .copied()
            .find(|&i| matches!(entries[i].effect, Effect::Delete(_)));
        let first_unread_put = optional.iter().copied().find(
            |&i| matches!(entries[i].effect, Effect::Put(v) if !self.read_values.contains(&v)),
        );
        let read_puts = optional.iter().copied().filter(
            |&i| matches!(entries[i].effect, Effect::Put(v) if self.read_values.contains(&v)),
        );
        first_delete
            .into_iter()
            .chain(first_unread_put)
            .chain(read_puts)
            .collect()
    }
}
