//! Randomized small graphs checked against naive reference implementations.

// The references index by node on purpose: they should read like the definitions.
#![allow(clippy::needless_range_loop)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::Rng;
use dataflow_core::{Counts, Cycle, Graph, GraphBuilder, NodeId, NodeState, Problem, Scheduler};

const SEEDS: u64 = 400;

/// A random graph definition plus the reference facts derived from it naively.
struct Case {
    graph: Graph,
    n: usize,
    /// Key names used by node inputs and outputs.
    inputs: Vec<Vec<String>>,
    outputs: Vec<Vec<String>>,
    external: BTreeSet<String>,
    explicit: Vec<(NodeId, NodeId)>,
    edges: BTreeSet<(usize, usize)>,
    /// reach[u][v]: a non-empty path u -> v.
    reach: Vec<Vec<bool>>,
}

fn key_name(rng: &mut Rng, keys: usize) -> String {
    // Mix short (stored inline) and long (stored in the arena) names.
    let k = rng.below(keys);
    if k.is_multiple_of(3) {
        format!("a-rather-long-key-name-{k}")
    } else {
        format!("k{k}")
    }
}

/// Adds the nodes in `batch` with one `add_keyed_nodes` call.
fn add_batch(
    b: &mut GraphBuilder,
    batch: &mut Vec<usize>,
    inputs: &[Vec<String>],
    outputs: &[Vec<String>],
) {
    let mut names = Vec::new();
    let mut counts = Vec::new();
    for &v in batch.iter() {
        names.extend(inputs[v].iter().chain(&outputs[v]).map(|s| s.as_str()));
        counts.push((inputs[v].len() as u32, outputs[v].len() as u32));
    }
    let first = b.node_count();
    b.add_keyed_nodes(&names, &counts);
    assert_eq!(b.node_count(), first + batch.len());
    batch.clear();
}

fn random_case(seed: u64) -> Case {
    let mut rng = Rng(seed);
    let n = rng.below(14);
    let keys = 1 + rng.below(2 * n + 2);
    // Some seeds only add edges from smaller to larger ids (the fast, "forward" paths).
    let forward_only = rng.chance(40);
    let mut b = GraphBuilder::new();
    let mut inputs = vec![Vec::new(); n];
    let mut outputs = vec![Vec::new(); n];
    let mut external = BTreeSet::new();
    let mut explicit = Vec::new();
    let mut produced_by: Vec<(String, usize)> = Vec::new();
    let mut split = Rng(seed ^ 0x5EED);
    let mut batch = Vec::new();
    for v in 0..n {
        for _ in 0..rng.below(3) {
            outputs[v].push(key_name(&mut rng, keys));
        }
        if forward_only {
            // Inputs only from keys already produced by earlier nodes.
            for _ in 0..rng.below(4) {
                if !produced_by.is_empty() {
                    let (k, _) = &produced_by[rng.below(produced_by.len())];
                    inputs[v].push(k.clone());
                }
            }
        } else {
            for _ in 0..rng.below(4) {
                inputs[v].push(key_name(&mut rng, keys));
            }
        }
        for k in &outputs[v] {
            if !produced_by.iter().any(|(p, _)| p == k) {
                produced_by.push((k.clone(), v));
            }
        }
        if forward_only {
            // A repeated output would make a later producer the first one: drop it.
            outputs[v].retain(|k| produced_by.iter().any(|(p, first)| p == k && *first == v));
        }
        // Nodes go in one by one, in batches, or a mix (batches see the keys of earlier single
        // nodes, and vice versa); `split` leaves `rng`'s draws, and so the cases, unchanged.
        if seed.is_multiple_of(3) || (seed % 3 == 2 && split.chance(50)) {
            add_batch(&mut b, &mut batch, &inputs, &outputs);
            let id = b.add_node(
                inputs[v].iter().map(|s| s.as_str()),
                outputs[v].iter().map(|s| s.as_str()),
            );
            assert_eq!(id as usize, v);
        } else {
            batch.push(v);
            if split.chance(30) {
                add_batch(&mut b, &mut batch, &inputs, &outputs);
            }
        }
    }
    add_batch(&mut b, &mut batch, &inputs, &outputs);
    assert_eq!(b.node_count(), n);
    for _ in 0..rng.below(n + 2) {
        let (from, to) = if forward_only {
            if n < 2 {
                continue;
            }
            let a = rng.below(n - 1);
            (a, a + 1 + rng.below(n - 1 - a))
        } else {
            // Occasionally out of range.
            (rng.below(n + 2), rng.below(n + 2))
        };
        explicit.push((from as NodeId, to as NodeId));
        b.add_edge(from as NodeId, to as NodeId);
    }
    for _ in 0..rng.below(3) {
        let k = key_name(&mut rng, keys);
        b.declare_external(&k);
        external.insert(k);
    }
    let graph = b.build();

    // Reference edges: first producer of each key, then explicit edges in range.
    let producer = |k: &str| (0..n).find(|&p| outputs[p].iter().any(|o| o == k));
    let mut edges = BTreeSet::new();
    for v in 0..n {
        for k in &inputs[v] {
            if let Some(p) = producer(k) {
                edges.insert((p, v));
            }
        }
    }
    for &(f, t) in &explicit {
        if (f as usize) < n && (t as usize) < n {
            edges.insert((f as usize, t as usize));
        }
    }
    // Reachability by repeated relaxation (Warshall).
    let mut reach = vec![vec![false; n]; n];
    for &(u, v) in &edges {
        reach[u][v] = true;
    }
    for k in 0..n {
        for i in 0..n {
            if reach[i][k] {
                for j in 0..n {
                    if reach[k][j] {
                        reach[i][j] = true;
                    }
                }
            }
        }
    }
    Case {
        graph,
        n,
        inputs,
        outputs,
        external,
        explicit,
        edges,
        reach,
    }
}

impl Case {
    fn has_cycle(&self) -> bool {
        (0..self.n).any(|v| self.reach[v][v])
    }

    fn preds(&self, v: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter(|e| e.1 == v)
            .map(|e| e.0)
            .collect()
    }

    fn succs(&self, v: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter(|e| e.0 == v)
            .map(|e| e.1)
            .collect()
    }

    /// Naive O(V^2) lexicographically smallest topological order.
    fn ref_topo(&self) -> Option<Vec<usize>> {
        let mut placed = vec![false; self.n];
        let mut order = Vec::new();
        while order.len() < self.n {
            let next =
                (0..self.n).find(|&v| !placed[v] && self.preds(v).iter().all(|&p| placed[p]))?;
            placed[next] = true;
            order.push(next);
        }
        Some(order)
    }

    fn assert_real_cycle(&self, cycle: &Cycle) {
        let p = &cycle.path;
        assert!(p.len() >= 2, "cycle too short: {p:?}");
        assert_eq!(p.first(), p.last(), "cycle not closed: {p:?}");
        for w in p.windows(2) {
            assert!(
                self.edges.contains(&(w[0] as usize, w[1] as usize)),
                "{p:?} uses a missing edge"
            );
        }
        let body = &p[..p.len() - 1];
        let distinct: BTreeSet<_> = body.iter().collect();
        assert_eq!(distinct.len(), body.len(), "cycle repeats a node: {p:?}");
        // Starts at the smallest id of its strongly connected component.
        let s = p[0] as usize;
        let smallest = (0..self.n)
            .find(|&u| u == s || (self.reach[u][s] && self.reach[s][u]))
            .unwrap();
        assert_eq!(
            smallest, s,
            "{p:?} does not start at its component's smallest id"
        );
    }

    /// Length in edges of a shortest cycle through `s`, by breadth-first search.
    fn shortest_cycle_len(&self, s: usize) -> usize {
        let mut dist = vec![usize::MAX; self.n];
        let mut queue = std::collections::VecDeque::from([s]);
        dist[s] = 0;
        while let Some(u) = queue.pop_front() {
            for w in self.succs(u) {
                if w == s {
                    return dist[u] + 1;
                }
                if dist[w] == usize::MAX {
                    dist[w] = dist[u] + 1;
                    queue.push_back(w);
                }
            }
        }
        unreachable!("no cycle through {s}")
    }
}

#[test]
fn structure_matches_reference() {
    for seed in 0..SEEDS {
        let c = random_case(seed);
        let g = &c.graph;
        assert_eq!(g.node_count(), c.n, "seed {seed}");
        let edges: Vec<(usize, usize)> = g.edges().map(|(u, v)| (u as usize, v as usize)).collect();
        assert_eq!(
            edges,
            c.edges.iter().copied().collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert_eq!(g.edge_count(), c.edges.len());
        for v in 0..c.n {
            let vid = v as NodeId;
            let to_usize = |s: &[u32]| s.iter().map(|&x| x as usize).collect::<Vec<_>>();
            assert_eq!(to_usize(g.successors(vid)), c.succs(v), "seed {seed}");
            assert_eq!(to_usize(g.predecessors(vid)), c.preds(v), "seed {seed}");
            let names = |ids: &[u32]| {
                ids.iter()
                    .map(|&k| g.key_name(k).to_string())
                    .collect::<Vec<_>>()
            };
            assert_eq!(names(g.node_inputs(vid)), c.inputs[v]);
            assert_eq!(names(g.node_outputs(vid)), c.outputs[v]);
        }
        let roots: Vec<usize> = (0..c.n).filter(|&v| c.preds(v).is_empty()).collect();
        let leaves: Vec<usize> = (0..c.n).filter(|&v| c.succs(v).is_empty()).collect();
        assert_eq!(
            g.roots().iter().map(|&x| x as usize).collect::<Vec<_>>(),
            roots
        );
        assert_eq!(
            g.leaves().iter().map(|&x| x as usize).collect::<Vec<_>>(),
            leaves
        );
        // Key ids follow first mention: each node's inputs, then its outputs, then externals.
        let mut first_mention: Vec<&str> = Vec::new();
        for v in 0..c.n {
            for name in c.inputs[v].iter().chain(&c.outputs[v]) {
                if !first_mention.contains(&name.as_str()) {
                    first_mention.push(name);
                }
            }
        }
        let ids: Vec<&str> = (0..g.key_count() as u32).map(|k| g.key_name(k)).collect();
        assert_eq!(ids[..first_mention.len()], first_mention[..], "seed {seed}");
        for k in 0..g.key_count() as u32 {
            let name = g.key_name(k);
            assert_eq!(g.key_id(name), Some(k));
            let consumers: Vec<u32> = (0..c.n as u32)
                .filter(|&v| c.inputs[v as usize].iter().any(|i| i == name))
                .collect();
            assert_eq!(g.consumers(k), &consumers[..], "seed {seed}");
            let producer =
                (0..c.n as u32).find(|&v| c.outputs[v as usize].iter().any(|o| o == name));
            assert_eq!(g.producer(k), producer);
            assert_eq!(g.is_external(k), c.external.contains(name));
        }
    }
}

#[test]
fn validate_matches_reference() {
    let mut cyclic_seen = 0;
    for seed in 0..SEEDS {
        let c = random_case(seed);
        let g = &c.graph;
        let key = |name: &str| g.key_id(name).unwrap();
        // Reference problems other than cycles.
        let mut expected = Vec::new();
        for &(from, to) in &c.explicit {
            if from as usize >= c.n || to as usize >= c.n {
                expected.push(Problem::BadEdge { from, to });
            }
        }
        for v in 0..c.n {
            for k in &c.outputs[v] {
                let first = (0..c.n).find(|&p| c.outputs[p].contains(k)).unwrap();
                if first != v {
                    // Once per extra producer, even if it lists the key twice.
                    let problem = Problem::DuplicateOutput {
                        key: key(k),
                        first: first as u32,
                        second: v as u32,
                    };
                    if !expected.contains(&problem) {
                        expected.push(problem);
                    }
                }
            }
        }
        let mut strict = expected.clone();
        for v in 0..c.n {
            for k in &c.inputs[v] {
                let produced = (0..c.n).any(|p| c.outputs[p].contains(k));
                let problem = Problem::MissingInput {
                    node: v as u32,
                    key: key(k),
                };
                if !produced && !c.external.contains(k) && !strict.contains(&problem) {
                    strict.push(problem);
                }
            }
        }
        for (strict_inputs, expected) in [(false, expected), (true, strict)] {
            let problems = g.validate(strict_inputs);
            let (cycles, others): (Vec<_>, Vec<_>) = problems
                .into_iter()
                .partition(|p| matches!(p, Problem::Cycle(_)));
            assert_eq!(others, expected, "seed {seed}");
            let cycles: Vec<Cycle> = cycles
                .into_iter()
                .map(|p| match p {
                    Problem::Cycle(c) => c,
                    _ => unreachable!(),
                })
                .collect();
            assert_eq!(!cycles.is_empty(), c.has_cycle(), "seed {seed}");
            // One cycle per cyclic component, ascending by smallest id.
            let cyclic_smallest: Vec<u32> = (0..c.n)
                .filter(|&s| c.reach[s][s] && (0..s).all(|u| !(c.reach[u][s] && c.reach[s][u])))
                .map(|s| s as u32)
                .collect();
            assert_eq!(
                cycles.iter().map(|c| c.path[0]).collect::<Vec<_>>(),
                cyclic_smallest,
                "seed {seed}"
            );
            for cycle in &cycles {
                c.assert_real_cycle(cycle);
                assert_eq!(
                    cycle.path.len() - 1,
                    c.shortest_cycle_len(cycle.path[0] as usize),
                    "seed {seed}"
                );
            }
            assert_eq!(g.find_cycle(), cycles.first().cloned());
        }
        cyclic_seen += c.has_cycle() as usize;
    }
    assert!(
        cyclic_seen > SEEDS as usize / 10,
        "too few cyclic cases: {cyclic_seen}"
    );
}

#[test]
fn orders_match_reference() {
    for seed in 0..SEEDS {
        let c = random_case(seed);
        let g = &c.graph;
        let Some(reference) = c.ref_topo() else {
            let err = g.topological_order().unwrap_err();
            c.assert_real_cycle(&err);
            assert_eq!(g.levels().unwrap_err(), err);
            assert!(g.critical_path(None).is_err() && g.bottom_levels(None).is_err());
            continue;
        };
        let order: Vec<usize> = g
            .topological_order()
            .unwrap()
            .iter()
            .map(|&v| v as usize)
            .collect();
        assert_eq!(order, reference, "seed {seed}");

        // Levels: longest number of edges from any root, by relaxation.
        let mut level = vec![0usize; c.n];
        for _ in 0..c.n {
            for &(u, v) in &c.edges {
                level[v] = level[v].max(level[u] + 1);
            }
        }
        let levels = g.levels().unwrap();
        let depth = level.iter().map(|l| l + 1).max().unwrap_or(0);
        assert_eq!(levels.len(), depth, "seed {seed}");
        for l in 0..depth {
            let expected: Vec<u32> = (0..c.n)
                .filter(|&v| level[v] == l)
                .map(|v| v as u32)
                .collect();
            assert_eq!(levels.get(l), &expected[..], "seed {seed} level {l}");
        }

        // Small integer weights keep float sums exact.
        let mut rng = Rng(seed ^ 0xABCDEF);
        let weights: Vec<f64> = (0..c.n).map(|_| rng.below(7) as f64 - 1.0).collect();
        for w in [None, Some(&weights[..])] {
            let weight = |v: usize| w.map_or(1.0, |w| w[v]);
            // Bottom levels by relaxation over the reverse topological order.
            let mut bottom = vec![0f64; c.n];
            for &v in reference.iter().rev() {
                let below = c
                    .succs(v)
                    .iter()
                    .map(|&s| bottom[s])
                    .fold(f64::NEG_INFINITY, f64::max);
                bottom[v] = weight(v) + if below.is_finite() { below } else { 0.0 };
            }
            assert_eq!(g.bottom_levels(w).unwrap(), bottom, "seed {seed}");
            // The heaviest root-to-leaf path is the heaviest bottom level of a root.
            let (total, path) = g.critical_path(w).unwrap();
            if c.n == 0 {
                assert_eq!((total, path), (0.0, vec![]));
                continue;
            }
            let best = (0..c.n)
                .filter(|&v| c.preds(v).is_empty())
                .map(|v| bottom[v])
                .fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(total, best, "seed {seed}");
            let p: Vec<usize> = path.iter().map(|&v| v as usize).collect();
            assert!(c.preds(p[0]).is_empty() && c.succs(*p.last().unwrap()).is_empty());
            for e in p.windows(2) {
                assert!(c.edges.contains(&(e[0], e[1])));
            }
            assert_eq!(p.iter().map(|&v| weight(v)).sum::<f64>(), total);
        }
    }
}

#[test]
fn queries_match_reference() {
    for seed in 0..SEEDS {
        let c = random_case(seed);
        let g = &c.graph;
        let mut rng = Rng(seed.wrapping_mul(31) + 7);
        for _ in 0..4 {
            let seeds: Vec<NodeId> = (0..rng.below(4))
                .map(|_| rng.below(c.n + 2) as NodeId)
                .collect();
            let valid: Vec<usize> = seeds
                .iter()
                .map(|&s| s as usize)
                .filter(|&s| s < c.n)
                .collect();
            let anc: Vec<NodeId> = (0..c.n)
                .filter(|&u| valid.iter().any(|&s| c.reach[u][s]))
                .map(|u| u as NodeId)
                .collect();
            let desc: Vec<NodeId> = (0..c.n)
                .filter(|&u| valid.iter().any(|&s| c.reach[s][u]))
                .map(|u| u as NodeId)
                .collect();
            assert_eq!(g.ancestors(&seeds), anc, "seed {seed}");
            assert_eq!(g.descendants(&seeds), desc, "seed {seed}");

            let completed: Vec<NodeId> = (0..c.n as NodeId).filter(|_| rng.chance(50)).collect();
            let ready: Vec<NodeId> = (0..c.n)
                .filter(|&v| !completed.contains(&(v as NodeId)))
                .filter(|&v| {
                    c.preds(v)
                        .iter()
                        .all(|&p| completed.contains(&(p as NodeId)))
                })
                .map(|v| v as NodeId)
                .collect();
            assert_eq!(g.ready_given(&completed), ready, "seed {seed}");
        }
        // required_for over every produced key, one at a time.
        for k in 0..g.key_count() as u32 {
            let name = g.key_name(k);
            match (0..c.n).find(|&p| c.outputs[p].iter().any(|o| o == name)) {
                Some(p) => {
                    let expected: Vec<NodeId> = (0..c.n)
                        .filter(|&u| u == p || c.reach[u][p])
                        .map(|u| u as NodeId)
                        .collect();
                    assert_eq!(g.required_for(&[name]).unwrap(), expected, "seed {seed}");
                }
                None => assert_eq!(g.required_for(&[name]), Err(name.to_string())),
            }
        }
    }
}

/// The key queries the bindings answer by name: edges, producers and consumers by key
/// name, the keys nobody produces and the keys produced, each against the definitions.
#[test]
fn key_queries_match_reference() {
    for seed in 0..SEEDS {
        let c = random_case(seed);
        let g = &c.graph;
        for u in 0..c.n + 2 {
            for v in 0..c.n + 2 {
                assert_eq!(
                    g.has_edge(u as NodeId, v as NodeId),
                    c.edges.contains(&(u, v)),
                    "seed {seed}: edge {u} -> {v}"
                );
            }
        }
        let first_producer = |k: &str| (0..c.n).find(|&p| c.outputs[p].iter().any(|o| o == k));
        let names: BTreeSet<&str> = c
            .inputs
            .iter()
            .chain(&c.outputs)
            .flatten()
            .map(String::as_str)
            .chain(["never-declared"])
            .collect();
        for &name in &names {
            let producer = first_producer(name).map(|p| p as NodeId);
            assert_eq!(g.producer_of(name), producer, "seed {seed}: {name}");
            let consumers: Vec<NodeId> = (0..c.n)
                .filter(|&v| c.inputs[v].iter().any(|i| i == name))
                .map(|v| v as NodeId)
                .collect();
            assert_eq!(g.consumers_of(name), consumers, "seed {seed}: {name}");
        }

        let unproduced = g.unproduced_inputs();
        assert!(
            unproduced.windows(2).all(|w| w[0] < w[1]),
            "seed {seed}: order"
        );
        let got: BTreeSet<&str> = unproduced.iter().map(|&k| g.key_name(k)).collect();
        let expected: BTreeSet<&str> = c
            .inputs
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|k| first_producer(k).is_none())
            .collect();
        assert_eq!(got, expected, "seed {seed}: unproduced inputs");

        let mut expected: Vec<&str> = Vec::new();
        for v in 0..c.n {
            for k in &c.outputs[v] {
                if first_producer(k) == Some(v) && !expected.contains(&k.as_str()) {
                    expected.push(k);
                }
            }
        }
        let got: Vec<&str> = g.output_keys().iter().map(|&k| g.key_name(k)).collect();
        assert_eq!(got, expected, "seed {seed}: output keys");
    }
}

/// `Graph::from_edges` is the builder fed the same edges, out-of-range ones included.
#[test]
fn from_edges_matches_builder() {
    for seed in 0..SEEDS {
        let mut rng = Rng(seed ^ 0xED6E);
        let n = rng.below(12) as u32;
        let edges: Vec<(NodeId, NodeId)> = (0..rng.below(20))
            .map(|_| {
                (
                    rng.below(n as usize + 2) as NodeId,
                    rng.below(n as usize + 2) as NodeId,
                )
            })
            .collect();
        let got = Graph::from_edges(n, &edges);
        let expected = common::from_edges(n, &edges);
        assert_eq!(got.node_count(), n as usize, "seed {seed}");
        assert_eq!(got.key_count(), 0, "seed {seed}");
        assert_eq!(
            got.edges().collect::<Vec<_>>(),
            expected.edges().collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert_eq!(got.validate(true), expected.validate(true), "seed {seed}");
    }
}

/// Random runs of the scheduler; after every step the states must agree with the
/// graph and with the counts.
#[test]
fn scheduler_random_runs_keep_invariants() {
    let mut runs = 0;
    for seed in 0..SEEDS {
        let c = random_case(seed);
        if c.has_cycle() {
            continue;
        }
        runs += 1;
        let mut rng = Rng(seed + 1000);
        let graph = Arc::new(c.graph);
        let capacity = if rng.chance(50) {
            None
        } else {
            Some(1 + rng.below(3))
        };
        let priorities: Option<Vec<f64>> = rng
            .chance(50)
            .then(|| (0..c.n).map(|_| rng.below(4) as f64).collect());
        let mut s = Scheduler::new(graph.clone(), priorities.clone(), capacity).unwrap();
        let marked: Vec<NodeId> = (0..c.n as NodeId).filter(|_| rng.chance(10)).collect();
        s.mark_done(&marked).unwrap();
        let mut running: Vec<NodeId> = s.start().unwrap();
        let allow_failures = rng.chance(50);
        let mut handed_out = running.clone();
        for step in 0.. {
            check_invariants(&s, &graph, &running, capacity, seed);
            if running.is_empty() {
                running = s.take_ready();
                handed_out.extend(&running);
                if running.is_empty() {
                    break;
                }
            }
            assert!(step < 10 * c.n + 10, "seed {seed}: no progress");
            let i = rng.below(running.len());
            let node = running[i];
            match rng.below(10) {
                0 if allow_failures => {
                    running.swap_remove(i);
                    let skipped = s.fail(node).unwrap();
                    for &v in &skipped {
                        assert!(c.reach[node as usize][v as usize]);
                        assert_eq!(s.state(v).unwrap(), NodeState::Skipped);
                    }
                }
                1 => {
                    running.swap_remove(i);
                    s.requeue(node).unwrap();
                }
                2 if running.len() > 1 => {
                    let batch = std::mem::take(&mut running);
                    let new = s.complete_many(&batch).unwrap();
                    handed_out.extend(&new);
                    running = new;
                }
                _ => {
                    running.swap_remove(i);
                    let new = s.complete(node).unwrap();
                    handed_out.extend(&new);
                    running.extend(new);
                }
            }
        }
        assert!(s.is_finished(), "seed {seed}");
        let counts = s.counts();
        assert_eq!(counts.done + counts.failed + counts.skipped, c.n);
        if !allow_failures {
            assert_eq!(counts.done, c.n, "seed {seed}");
            // Every node not marked done was handed out at least once (more after requeue).
            for v in 0..c.n as NodeId {
                assert_eq!(handed_out.contains(&v), !marked.contains(&v), "seed {seed}");
            }
        }
    }
    assert!(runs > SEEDS as usize / 3);
}

fn check_invariants(
    s: &Scheduler,
    g: &Graph,
    running: &[NodeId],
    capacity: Option<usize>,
    seed: u64,
) {
    let mut counts = Counts::default();
    for v in 0..g.node_count() as NodeId {
        let state = s.state(v).unwrap();
        match state {
            NodeState::Pending => counts.pending += 1,
            NodeState::Ready => counts.ready += 1,
            NodeState::Running => counts.running += 1,
            NodeState::Done => counts.done += 1,
            NodeState::Failed => counts.failed += 1,
            NodeState::Skipped => counts.skipped += 1,
        }
        if matches!(state, NodeState::Ready | NodeState::Running) {
            for &p in g.predecessors(v) {
                assert_eq!(
                    s.state(p).unwrap(),
                    NodeState::Done,
                    "seed {seed}: {v} ran before {p}"
                );
            }
        }
        assert_eq!(
            state == NodeState::Running,
            running.contains(&v),
            "seed {seed} node {v}"
        );
    }
    assert_eq!(s.counts(), counts, "seed {seed}");
    for (state, count) in counts.by_state() {
        assert_eq!(counts.get(state), count, "seed {seed}: {state}");
    }
    let total: usize = counts.by_state().iter().map(|&(_, count)| count).sum();
    assert_eq!(total, g.node_count(), "seed {seed}");
    if let Some(cap) = capacity {
        assert!(counts.running <= cap, "seed {seed}");
    }
}
