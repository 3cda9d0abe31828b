//! Release-mode timings on a 1,000,000-node / ~3,000,000-edge random DAG:
//! `cargo run --release --example scale -p taskiq-dataflow-core [nodes]`.
//!
//! Node i outputs key "k{i}" and consumes the keys of 3 random earlier nodes. The
//! graph is timed twice: with nodes added in that (dependency) order, and with the
//! same nodes added in a random order, where no edge direction can be assumed.
//! Each line gives the best wall-clock time of 3 runs and, in parentheses, the best
//! on-CPU time of this thread (which leaves out time other processes held the CPU).

use std::sync::Arc;
use std::time::Instant;

use dataflow_core::{GraphBuilder, Scheduler};

/// splitmix64: enough randomness for a benchmark without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// Best of `REPEAT` runs: the machine may be shared, and the minimum is the least
/// disturbed measurement.
const REPEAT: usize = 3;

/// A wall-clock and an on-CPU time, in milliseconds.
#[derive(Clone, Copy)]
struct Span {
    wall: f64,
    cpu: f64,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:7.1} ms (cpu {:6.1})", self.wall, self.cpu)
    }
}

/// Time this thread has spent on a CPU, in ns (Linux): unlike wall-clock time it
/// does not grow while other processes have the CPU. Falls back to wall-clock.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

struct Timer(Instant, Option<u64>);

impl Timer {
    fn start() -> Self {
        Timer(Instant::now(), cpu_ns())
    }

    fn stop(&self) -> Span {
        let wall = self.0.elapsed().as_secs_f64() * 1e3;
        let cpu = match (self.1, cpu_ns()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1e6,
            _ => wall,
        };
        Span { wall, cpu }
    }
}

fn best_of<T>(mut f: impl FnMut() -> T) -> (Span, T) {
    best_of_timed(|| {
        let t = Timer::start();
        let r = f();
        (t.stop(), r)
    })
}

/// `best_of` for closures that time only part of their work themselves.
fn best_of_timed<T>(mut f: impl FnMut() -> (Span, T)) -> (Span, T) {
    let mut best = Span {
        wall: f64::INFINITY,
        cpu: f64::INFINITY,
    };
    let mut result = None;
    for _ in 0..REPEAT {
        let (t, r) = f();
        best.wall = best.wall.min(t.wall);
        best.cpu = best.cpu.min(t.cpu);
        result = Some(r);
    }
    (best, result.expect("REPEAT > 0"))
}

/// The benchmark graph with its nodes in the order `order` gives: the node added
/// at position p is node `order[p]`. Returns the output key of each position and the
/// positions whose outputs it consumes, both laid out in adding order as a caller's
/// own task list would be.
fn make_case(order: &[usize], rng: &mut SplitMix) -> (Vec<String>, Vec<Vec<usize>>) {
    let n = order.len();
    // Node i consumes the outputs of 3 random earlier nodes.
    let consumed: Vec<[usize; 3]> = (0..n)
        .map(|i| {
            if i == 0 {
                [0; 3]
            } else {
                [rng.below(i), rng.below(i), rng.below(i)]
            }
        })
        .collect();
    let mut position = vec![0; n];
    for (p, &i) in order.iter().enumerate() {
        position[i] = p;
    }
    let names = order.iter().map(|&i| format!("k{i}")).collect();
    let inputs = order
        .iter()
        .map(|&i| {
            let count = if i == 0 { 0 } else { 3 };
            consumed[i][..count].iter().map(|&j| position[j]).collect()
        })
        .collect();
    (names, inputs)
}

fn run(names: &[String], inputs: &[Vec<usize>], label: &str) {
    let n = names.len();
    println!("--- {label} (best of {REPEAT})");
    let (add_ms, builder) = best_of(|| {
        let mut builder = GraphBuilder::with_capacity(n, n);
        for (name, inputs) in names.iter().zip(inputs) {
            builder.add_node(inputs.iter().map(|&j| names[j].as_str()), [name.as_str()]);
        }
        builder
    });
    let (finish_ms, graph) = best_of(|| builder.clone().build());
    let total = Span {
        wall: add_ms.wall + finish_ms.wall,
        cpu: add_ms.cpu + finish_ms.cpu,
    };
    println!(
        "build             {total}  (add_node {:.1} + build() {:.1}; {} nodes, {} edges, {} keys)",
        add_ms.wall,
        finish_ms.wall,
        graph.node_count(),
        graph.edge_count(),
        graph.key_count()
    );

    let (t, problems) = best_of(|| graph.validate(true));
    println!("validate(strict)  {t}  ({} problems)", problems.len());
    let (t, order) = best_of(|| graph.topological_order().expect("acyclic"));
    println!("topological_order {t}  ({} nodes)", order.len());
    let (t, levels) = best_of(|| graph.levels().expect("acyclic"));
    println!("levels            {t}  ({} levels)", levels.len());
    let (t, (weight, path)) = best_of(|| graph.critical_path(None).expect("acyclic"));
    println!(
        "critical_path     {t}  (weight {weight}, {} nodes)",
        path.len()
    );
    let (t, bottom) = best_of(|| graph.bottom_levels(None).expect("acyclic"));
    println!("bottom_levels     {t}");

    let graph = Arc::new(graph);
    let (new_ms, _) = best_of(|| Scheduler::new(Arc::clone(&graph), None, None).expect("acyclic"));
    // The walk: start, then complete every handed-out batch in the order it became ready.
    let (t, completed) = best_of_timed(|| {
        let mut scheduler = Scheduler::new(Arc::clone(&graph), None, None).expect("acyclic");
        let t = Timer::start();
        let mut batch = scheduler.start().expect("first start");
        let mut completed = 0usize;
        while !batch.is_empty() {
            completed += batch.len();
            batch = scheduler.complete_many(&batch).expect("running nodes");
        }
        assert!(scheduler.is_finished());
        (t.stop(), completed)
    });
    assert_eq!(completed, n);
    println!(
        "scheduler walk    {}  (start + complete_many; Scheduler::new {:.1} ms)",
        t, new_ms.wall
    );

    let (t, completed) = best_of_timed(|| {
        let mut scheduler =
            Scheduler::new(Arc::clone(&graph), Some(bottom.clone()), Some(64)).expect("acyclic");
        let t = Timer::start();
        let mut running = scheduler.start().expect("first start");
        let mut completed = 0usize;
        while let Some(node) = running.pop() {
            completed += 1;
            running.extend(scheduler.complete(node).expect("running node"));
        }
        assert!(scheduler.is_finished());
        (t.stop(), completed)
    });
    assert_eq!(completed, n);
    println!(
        "scheduler walk    {}  (complete() one at a time, priorities, capacity 64)",
        t
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("node count"))
        .unwrap_or(1_000_000);

    // Generated up front so that only the graph work is timed.
    let mut rng = SplitMix(42);
    let in_order: Vec<usize> = (0..n).collect();
    let (names, inputs) = make_case(&in_order, &mut rng);
    run(&names, &inputs, "nodes added in dependency order");

    let mut shuffled = in_order;
    for i in (1..n).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    let (names, inputs) = make_case(&shuffled, &mut SplitMix(42));
    run(&names, &inputs, "same graph, nodes added in random order");
}
