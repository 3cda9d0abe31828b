//! Release-mode timings on a 1,000,000-node / ~3,000,000-edge random DAG:
//! `cargo run --release --example scale -p taskiq-dataflow-core [nodes]`.

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

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("node count"))
        .unwrap_or(1_000_000);

    // Inputs are generated up front so that only the graph work is timed.
    let mut rng = SplitMix(42);
    let names: Vec<String> = (0..n).map(|i| format!("k{i}")).collect();
    let inputs: Vec<[usize; 3]> = (0..n)
        .map(|i| {
            if i == 0 {
                [0; 3]
            } else {
                [rng.below(i), rng.below(i), rng.below(i)]
            }
        })
        .collect();

    let t = Instant::now();
    let mut builder = GraphBuilder::with_capacity(n, n);
    for i in 0..n {
        let ins: &[usize] = if i == 0 { &[] } else { &inputs[i] };
        builder.add_node(
            ins.iter().map(|&j| names[j].as_str()),
            [names[i].as_str()],
        );
    }
    let add_ms = ms(t);
    let graph = builder.build();
    let build_ms = ms(t);
    println!(
        "nodes {}  edges {}  keys {}",
        graph.node_count(),
        graph.edge_count(),
        graph.key_count()
    );
    println!("build             {build_ms:8.1} ms  (add_node {add_ms:.1} ms + build() {:.1} ms)", build_ms - add_ms);

    for _ in 0..3 {
        let t = Instant::now();
        let p = graph.validate(false);
        let a = ms(t);
        let t = Instant::now();
        let o = graph.topological_order().unwrap();
        let b = ms(t);
        let t = Instant::now();
        let l = graph.levels().unwrap();
        println!("warm: validate {a:.1} topo {b:.1} levels {:.1} {} {} {}", ms(t), p.len(), o.len(), l.len());
    }
    let t = Instant::now();
    let problems = graph.validate(true);
    println!("validate(strict)  {:8.1} ms  ({} problems)", ms(t), problems.len());

    let t = Instant::now();
    let order = graph.topological_order().expect("acyclic");
    println!("topological_order {:8.1} ms  ({} nodes)", ms(t), order.len());

    let t = Instant::now();
    let levels = graph.levels().expect("acyclic");
    println!("levels            {:8.1} ms  ({} levels)", ms(t), levels.len());

    let t = Instant::now();
    let (weight, path) = graph.critical_path(None).expect("acyclic");
    println!("critical_path     {:8.1} ms  (weight {weight}, {} nodes)", ms(t), path.len());

    let t = Instant::now();
    let bottom = graph.bottom_levels(None).expect("acyclic");
    println!("bottom_levels     {:8.1} ms  ({} values)", ms(t), bottom.len());

    let graph = Arc::new(graph);
    let t = Instant::now();
    let mut scheduler = Scheduler::new(Arc::clone(&graph), None, None).expect("acyclic");
    let new_ms = ms(t);
    let t = Instant::now();
    let mut batch = scheduler.start().expect("first start");
    let mut completed = 0usize;
    while !batch.is_empty() {
        completed += batch.len();
        batch = scheduler.complete_many(&batch).expect("running nodes");
    }
    assert!(scheduler.is_finished());
    assert_eq!(completed, n);
    println!("scheduler walk    {:8.1} ms  (start + complete_many of {completed} nodes; new() {new_ms:.1} ms)", ms(t));

    let mut scheduler = Scheduler::new(Arc::clone(&graph), Some(bottom), Some(64)).expect("acyclic");
    let t = Instant::now();
    let mut running = scheduler.start().expect("first start");
    let mut completed = 0usize;
    while let Some(node) = running.pop() {
        completed += 1;
        running.extend(scheduler.complete(node).expect("running node"));
    }
    assert!(scheduler.is_finished());
    assert_eq!(completed, n);
    println!("scheduler walk    {:8.1} ms  (one complete() at a time, priorities, capacity 64)", ms(t));
}
