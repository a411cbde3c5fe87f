//! Several VMs (one `JwksStore` per thread, as Envoy runs one VM per worker) against one
//! shared-data table with the host's semantics. A scheduler lets exactly one of them run at a
//! time and decides, before every single shared-data `get` and `set`, who goes next, so a VM
//! can be overtaken between reading the record and writing it back. Orders are enumerated
//! exhaustively for a cold start and drawn from seeded random sequences for long runs.
//!
//! Checked after every step: at most one fetch is in flight in the whole Envoy, and a refresh
//! makes exactly one; every key set a VM holds is the one published under its generation; in
//! the end every VM holds the newest generation.

use crate::config::Config;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;

use super::*;
use crate::shared_data::{HostSharedTable, SetResult, SharedData};

const WORKERS: usize = 3;
/// The TTL of the configuration below (`refresh_interval_s: 1`).
const TTL_MS: u64 = 1_000;
const REFETCH_MIN_INTERVAL_MS: u64 = 1_000;
/// Host time is Unix time: never near 0.
const START_MS: UnixMillis = 1_700_000_000_000;

fn config_json() -> String {
    serde_json::json!({
        "providers": {"idp": {"issuer": "https://idp.example/tenant", "audiences": ["a"], "jwks": {"remote": {
            "cluster": "idp", "uri": "https://idp.example/keys", "refresh_interval_s": 1,
            "max_stale_s": 60, "refetch_min_interval_s": 1, "timeout_ms": 1000}}}},
        "rules": [{"match": {"prefix": "/"}, "allow_anonymous": true}]
    })
    .to_string()
}

/// Fetch number `n` serves a key set of its own (kid `k<n>`), so a key set names its fetch.
fn jwks_of_fetch(n: usize) -> Vec<u8> {
    format!(
        r#"{{"keys": [{{"kty": "EC", "kid": "k{n}", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}}]}}"#
    )
    .into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Running,
    AtSharedDataCall,
    Idle,
}

#[derive(Debug, Clone)]
enum Action {
    Tick(UnixMillis),
    Outcome(UnixMillis, Vec<u8>),
    UnknownKid(UnixMillis),
    Exit,
}

/// What a VM tells the scheduler after each action.
#[derive(Debug, Clone, Default)]
struct Report {
    /// The time the action was given (the clock may have moved on while it ran).
    at: UnixMillis,
    dispatched: usize,
    /// The fetch was for an unknown `kid`, not a due refresh.
    forced: bool,
    succeeded: bool,
    failed: bool,
    generation: Option<u64>,
    kids: Vec<String>,
}

struct Turns {
    status: Vec<Status>,
    granted: Vec<bool>,
    action: Vec<Option<Action>>,
    report: Vec<Option<Report>>,
}

struct Gate {
    turns: Mutex<Turns>,
    wake: Condvar,
    table: Mutex<HostSharedTable>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Gate {
    fn new() -> Self {
        Gate {
            turns: Mutex::new(Turns {
                status: vec![Status::Running; WORKERS],
                granted: vec![false; WORKERS],
                action: vec![None; WORKERS],
                report: vec![None; WORKERS],
            }),
            wake: Condvar::new(),
            table: Mutex::new(HostSharedTable::default()),
        }
    }

    fn wait_while<'a>(
        &self,
        guard: MutexGuard<'a, Turns>,
        condition: impl FnMut(&mut Turns) -> bool,
    ) -> MutexGuard<'a, Turns> {
        self.wake
            .wait_while(guard, condition)
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A VM's shared-data call: wait for the scheduler's permission.
    fn before_call(&self, worker: usize) {
        let mut turns = lock(&self.turns);
        turns.status[worker] = Status::AtSharedDataCall;
        self.wake.notify_all();
        let mut turns = self.wait_while(turns, |t| !t.granted[worker]);
        turns.granted[worker] = false;
    }

    /// A VM finished an action: report, then wait for the next one.
    fn idle(&self, worker: usize, report: Option<Report>) -> Action {
        let mut turns = lock(&self.turns);
        turns.report[worker] = report;
        turns.status[worker] = Status::Idle;
        self.wake.notify_all();
        let mut turns = self.wait_while(turns, |t| t.action[worker].is_none());
        turns.action[worker].take().unwrap_or(Action::Exit)
    }

    /// Waits until no VM is running, so the scheduler sees a settled state.
    fn settled(&self) -> MutexGuard<'_, Turns> {
        let turns = lock(&self.turns);
        self.wait_while(turns, |t| t.status.contains(&Status::Running))
    }
}

struct GatedShared {
    gate: Arc<Gate>,
    worker: usize,
}

impl SharedData for GatedShared {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        self.gate.before_call(self.worker);
        match lock(&self.gate.table).get(key) {
            Some((value, cas)) => (Some(value), Some(cas)),
            None => (None, None),
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        self.gate.before_call(self.worker);
        lock(&self.gate.table).set(key, value, cas.unwrap_or(0)) == SetResult::Ok
    }
}

fn run_vm(gate: Arc<Gate>, worker: usize) {
    let config = Config::from_json(config_json().as_bytes()).unwrap();
    let mut store = JwksStore::new(&config, worker as u64 + 1);
    let shared = GatedShared {
        gate: Arc::clone(&gate),
        worker,
    };
    let mut report = None;
    loop {
        let action = gate.idle(worker, report.take());
        let at = match &action {
            Action::Tick(now) | Action::Outcome(now, _) | Action::UnknownKid(now) => *now,
            Action::Exit => return,
        };
        let (fetches, events) = match action {
            Action::Exit => return,
            Action::Tick(now) => store.tick(&shared, now),
            Action::Outcome(now, body) => {
                let outcome = FetchOutcome::Response {
                    status: 200,
                    body,
                    max_age_s: None,
                };
                store.on_fetch_outcome(&shared, 0, outcome, now)
            }
            Action::UnknownKid(now) => {
                store.on_unknown_kid(&shared, 0, now);
                (Vec::new(), Vec::new())
            }
        };
        report = Some(Report {
            at,
            dispatched: fetches.len(),
            forced: events.contains(&StoreEvent::KidMissRefetch { provider: 0 }),
            succeeded: events.contains(&StoreEvent::FetchSucceeded { provider: 0 }),
            failed: events
                .iter()
                .any(|e| matches!(e, StoreEvent::FetchFailed { .. })),
            generation: store.generation(0),
            kids: store.keys(0).map(|k| k.kids()).unwrap_or_default(),
        });
    }
}

/// Where the scheduler's choices come from.
trait Chooser {
    fn choose(&mut self, options: usize) -> usize;

    /// Whether an action's first shared-data call follows its start at once. Nothing of an
    /// action is visible before that call, so this only drops orders in which the action's
    /// time is older than the clock at its first call; enumeration affords it, random runs
    /// keep those orders.
    fn fuses_starts(&self) -> bool {
        false
    }
}

/// splitmix64: reproducible orders without a dependency.
struct Seeded(u64);

impl Chooser for Seeded {
    fn choose(&mut self, options: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % options as u64) as usize
    }
}

/// Replays a prefix of choices, then takes the first option, recording every branching point:
/// depth-first enumeration of all orders.
#[derive(Default)]
struct Exhaustive {
    prefix: Vec<usize>,
    taken: Vec<(usize, usize)>,
}

impl Chooser for Exhaustive {
    fn choose(&mut self, options: usize) -> usize {
        let choice = self.prefix.get(self.taken.len()).copied().unwrap_or(0);
        self.taken.push((choice, options));
        choice
    }

    fn fuses_starts(&self) -> bool {
        true
    }
}

impl Exhaustive {
    /// The next order to try, or `None` when all were tried.
    fn next(mut self) -> Option<Exhaustive> {
        while let Some((choice, options)) = self.taken.pop() {
            if choice + 1 < options {
                let mut prefix: Vec<usize> = self.taken.iter().map(|(c, _)| *c).collect();
                prefix.push(choice + 1);
                return Some(Exhaustive {
                    prefix,
                    taken: Vec::new(),
                });
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy)]
enum Move {
    Grant(usize),
    Start(usize, Step),
    AdvanceClock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Tick,
    Outcome,
    UnknownKid,
}

/// The run's bookkeeping and its assertions.
struct Observer {
    /// Clock values the run walks through; the clock only moves while no fetch is in flight.
    times: Vec<UnixMillis>,
    clock: usize,
    done: Vec<Vec<Step>>,
    unknown_kids: bool,
    in_flight: Option<usize>,
    fetches: usize,
    last_forced: Option<UnixMillis>,
    last_publish: Option<UnixMillis>,
    published: BTreeMap<u64, Vec<String>>,
}

impl Observer {
    fn now(&self) -> UnixMillis {
        self.times[self.clock]
    }

    fn moves(&self, turns: &Turns) -> Vec<Move> {
        let mut moves = Vec::new();
        for worker in 0..WORKERS {
            match turns.status[worker] {
                Status::AtSharedDataCall => moves.push(Move::Grant(worker)),
                Status::Idle => {
                    let done = &self.done[worker];
                    if !done.contains(&Step::Tick) {
                        moves.push(Move::Start(worker, Step::Tick));
                    }
                    if self.in_flight == Some(worker) {
                        moves.push(Move::Start(worker, Step::Outcome));
                    }
                    if self.unknown_kids && !done.contains(&Step::UnknownKid) {
                        moves.push(Move::Start(worker, Step::UnknownKid));
                    }
                }
                Status::Running => {}
            }
        }
        if self.in_flight.is_none() && self.clock + 1 < self.times.len() {
            moves.push(Move::AdvanceClock);
        }
        moves
    }

    fn action(&mut self, worker: usize, step: Step) -> Action {
        self.done[worker].push(step);
        let now = self.now();
        match step {
            Step::Tick => Action::Tick(now),
            Step::Outcome => Action::Outcome(now, jwks_of_fetch(self.fetches)),
            Step::UnknownKid => Action::UnknownKid(now),
        }
    }

    fn check(&mut self, worker: usize, report: &Report, trace: &[String]) {
        let now = report.at;
        assert!(!report.failed, "no fetch fails here: {trace:?}");
        if report.dispatched > 0 {
            assert_eq!(report.dispatched, 1, "{trace:?}");
            assert_eq!(
                self.in_flight, None,
                "worker {worker} fetches while another fetch is in flight: {trace:?}"
            );
            if report.forced {
                assert!(
                    self.last_forced
                        .is_none_or(|last| now >= last + REFETCH_MIN_INTERVAL_MS),
                    "unknown-kid refetches closer than the rate limit allows: {trace:?}"
                );
                self.last_forced = Some(now);
            } else if let Some(published) = self.last_publish {
                assert!(
                    now >= published + TTL_MS * 3 / 4,
                    "a second fetch for one refresh: {trace:?}"
                );
            }
            self.in_flight = Some(worker);
            self.fetches += 1;
        }
        if report.succeeded {
            assert_eq!(self.in_flight, Some(worker), "{trace:?}");
            self.in_flight = None;
            self.last_publish = Some(now);
        }
        // Whoever is seen first with a generation (publisher or adopter) fixes its keys.
        if let Some(generation) = report.generation {
            let first = self
                .published
                .entry(generation)
                .or_insert_with(|| report.kids.clone());
            assert_eq!(
                first, &report.kids,
                "worker {worker} holds other keys under generation {generation}: {trace:?}"
            );
        }
    }
}

/// One run under the chooser's order; returns the trace of moves.
fn run(times: Vec<UnixMillis>, unknown_kids: bool, chooser: &mut dyn Chooser) -> Vec<String> {
    let gate = Arc::new(Gate::new());
    let vms: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let gate = Arc::clone(&gate);
            thread::spawn(move || run_vm(gate, worker))
        })
        .collect();
    let mut observer = Observer {
        times,
        clock: 0,
        done: vec![Vec::new(); WORKERS],
        unknown_kids,
        in_flight: None,
        fetches: 0,
        last_forced: None,
        last_publish: None,
        published: BTreeMap::new(),
    };
    let mut trace = Vec::new();
    // Workers just given an action, whose first shared-data call goes at once (see `Chooser`).
    let mut started = [false; WORKERS];
    loop {
        let mut turns = gate.settled();
        for worker in 0..WORKERS {
            if let Some(report) = turns.report[worker].take() {
                observer.check(worker, &report, &trace);
            }
        }
        if let Some(worker) = (0..WORKERS).find(|w| started[*w]) {
            started[worker] = false;
            if turns.status[worker] == Status::AtSharedDataCall {
                turns.granted[worker] = true;
                turns.status[worker] = Status::Running;
                gate.wake.notify_all();
                continue;
            }
        }
        let moves = observer.moves(&turns);
        let Some(chosen) = (!moves.is_empty()).then(|| moves[chooser.choose(moves.len())]) else {
            break;
        };
        trace.push(format!("{chosen:?}@{}", observer.now()));
        match chosen {
            Move::Grant(worker) => {
                turns.granted[worker] = true;
                turns.status[worker] = Status::Running;
            }
            Move::Start(worker, step) => {
                turns.action[worker] = Some(observer.action(worker, step));
                turns.status[worker] = Status::Running;
                started[worker] = chooser.fuses_starts();
            }
            Move::AdvanceClock => {
                observer.clock += 1;
                observer.done.iter_mut().for_each(Vec::clear);
            }
        }
        gate.wake.notify_all();
    }
    assert!(observer.fetches >= 1, "keys were fetched: {trace:?}");
    let newest = observer.published.keys().max().copied();

    // Converge: every VM ticks once more and must hold the newest generation.
    for worker in 0..WORKERS {
        let mut turns = gate.settled();
        turns.action[worker] = Some(Action::Tick(observer.now()));
        turns.status[worker] = Status::Running;
        gate.wake.notify_all();
        drop(turns);
        loop {
            let mut turns = gate.settled();
            if let Some(report) = turns.report[worker].take() {
                assert_eq!(
                    report.generation, newest,
                    "worker {worker} converged: {trace:?}"
                );
                break;
            }
            turns.granted[worker] = true;
            turns.status[worker] = Status::Running;
            gate.wake.notify_all();
        }
    }
    let mut turns = gate.settled();
    for action in turns.action.iter_mut() {
        *action = Some(Action::Exit);
    }
    turns.status.iter_mut().for_each(|s| *s = Status::Running);
    gate.wake.notify_all();
    drop(turns);
    for vm in vms {
        vm.join().unwrap();
    }
    trace
}

#[test]
fn cold_start_every_order_of_three_vms_fetches_once() {
    let mut order = Some(Exhaustive::default());
    let mut orders = 0;
    while let Some(mut chooser) = order {
        run(vec![START_MS], false, &mut chooser);
        orders += 1;
        order = chooser.next();
    }
    assert!(orders > 300, "{orders} orders explored");
}

#[test]
fn refreshes_in_random_orders_fetch_once_each_and_converge() {
    for seed in 0..300 {
        let times = (0..=30).map(|step| START_MS + step * 100).collect();
        run(times, false, &mut Seeded(seed));
    }
}

#[test]
fn unknown_kid_refetches_in_random_orders_stay_exclusive_and_rate_limited() {
    for seed in 0..300 {
        let times = (0..=30).map(|step| START_MS + step * 100).collect();
        run(times, true, &mut Seeded(1_000 + seed));
    }
}
