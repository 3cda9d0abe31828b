//! Release-mode timings on a 1,000,000-node / ~3,000,000-edge random DAG:
//! `cargo run --release --example scale -p taskiq-dataflow-core [nodes]`.
//!
//! Node i outputs key "k{i}" and consumes the keys of 3 random earlier nodes. The
//! graph is timed twice: with nodes added in that (dependency) order, and with the
//! same nodes added in a random order, where no edge direction can be assumed.

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

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

fn run(names: &[String], inputs: &[Vec<usize>], add_order: &[usize], label: &str) {
    let n = names.len();
    println!("--- {label}");
    let t = Instant::now();
    let mut builder = GraphBuilder::with_capacity(n, n);
    for &i in add_order {
        builder.add_node(
            inputs[i].iter().map(|&j| names[j].as_str()),
            [names[i].as_str()],
        );
    }
    let add_ms = ms(t);
    let graph = builder.build();
    let build_ms = ms(t);
    println!(
        "build             {build_ms:7.1} ms  (add_node {add_ms:.1} + build() {:.1}; {} nodes, {} edges, {} keys)",
        build_ms - add_ms,
        graph.node_count(),
        graph.edge_count(),
        graph.key_count()
    );

    let t = Instant::now();
    let problems = graph.validate(true);
    println!(
        "validate(strict)  {:7.1} ms  ({} problems)",
        ms(t),
        problems.len()
    );

    let t = Instant::now();
    let order = graph.topological_order().expect("acyclic");
    println!(
        "topological_order {:7.1} ms  ({} nodes)",
        ms(t),
        order.len()
    );

    let t = Instant::now();
    let levels = graph.levels().expect("acyclic");
    println!(
        "levels            {:7.1} ms  ({} levels)",
        ms(t),
        levels.len()
    );

    let t = Instant::now();
    let (weight, path) = graph.critical_path(None).expect("acyclic");
    println!(
        "critical_path     {:7.1} ms  (weight {weight}, {} nodes)",
        ms(t),
        path.len()
    );

    let t = Instant::now();
    let bottom = graph.bottom_levels(None).expect("acyclic");
    println!("bottom_levels     {:7.1} ms", ms(t));

    let graph = Arc::new(graph);
    let t = Instant::now();
    let mut scheduler = Scheduler::new(Arc::clone(&graph), None, None).expect("acyclic");
    let new_ms = ms(t);
    // The walk: start, then complete every handed-out batch in the order it became ready.
    let t = Instant::now();
    let mut batch = scheduler.start().expect("first start");
    let mut completed = 0usize;
    while !batch.is_empty() {
        completed += batch.len();
        batch = scheduler.complete_many(&batch).expect("running nodes");
    }
    assert!(scheduler.is_finished() && completed == n);
    println!(
        "scheduler walk    {:7.1} ms  (start + complete_many; Scheduler::new {new_ms:.1} ms)",
        ms(t)
    );

    let mut scheduler =
        Scheduler::new(Arc::clone(&graph), Some(bottom), Some(64)).expect("acyclic");
    let t = Instant::now();
    let mut running = scheduler.start().expect("first start");
    let mut completed = 0usize;
    while let Some(node) = running.pop() {
        completed += 1;
        running.extend(scheduler.complete(node).expect("running node"));
    }
    assert!(scheduler.is_finished() && completed == n);
    println!(
        "scheduler walk    {:7.1} ms  (complete() one at a time, priorities, capacity 64)",
        ms(t)
    );
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("node count"))
        .unwrap_or(1_000_000);

    // Generated up front so that only the graph work is timed.
    let mut rng = SplitMix(42);
    let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let inputs: Vec<Vec<usize>> = (0..n)
        .map(|i| {
            if i == 0 {
                Vec::new()
            } else {
                (0..3).map(|_| rng.below(i)).collect()
            }
        })
        .collect();

    let in_order: Vec<usize> = (0..n).collect();
    run(
        &names,
        &inputs,
        &in_order,
        "nodes added in dependency order",
    );

    let mut shuffled = in_order;
    for i in (1..n).rev() {
        shuffled.swap(i, rng.below(i + 1));
    }
    run(
        &names,
        &inputs,
        &shuffled,
        "same graph, nodes added in random order",
    );
}
