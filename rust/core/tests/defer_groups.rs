//! `Scheduler::defer`, groups with their own capacity and priorities of added nodes.

mod common;

use std::sync::Arc;

use common::{from_keys, Rng};
use dataflow_core::{AddOptions, Cycle, GrowError, NodeState, SchedError, Scheduler};

use NodeState::*;

/// Flattens `(inputs, outputs)` per node into the `names` and `counts` of `add_nodes`.
fn batch(nodes: &[(&[&str], &[&str])]) -> (Vec<String>, Vec<(u32, u32)>) {
    let mut names = Vec::new();
    let mut counts = Vec::new();
    for &(ins, outs) in nodes {
        names.extend(ins.iter().chain(outs).map(|s| s.to_string()));
        counts.push((ins.len() as u32, outs.len() as u32));
    }
    (names, counts)
}

fn add_with(
    s: &mut Scheduler,
    nodes: &[(&[&str], &[&str])],
    options: AddOptions<'_>,
) -> Result<dataflow_core::Added, GrowError> {
    let (names, counts) = batch(nodes);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.add_nodes_with(&names, &counts, options)
}

fn add(s: &mut Scheduler, nodes: &[(&[&str], &[&str])]) -> dataflow_core::Added {
    add_with(s, nodes, AddOptions::default()).unwrap()
}

fn in_group(group: u32) -> AddOptions<'static> {
    AddOptions {
        priorities: None,
        group: Some(group),
    }
}

/// 0 (the map task) outputs "items"; 1 reads it. Started: 0 is running.
fn map_run() -> Scheduler {
    let g = from_keys(&[(&[], &["items"]), (&["items"], &["res"])]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    s
}

/// Two items (2, 3) and their gather (4), added by the running map task.
fn add_items_and_gather(s: &mut Scheduler) {
    let added = add(
        s,
        &[
            (&[], &["x0"]),
            (&[], &["x1"]),
            (&["x0", "x1"], &["gathered"]),
        ],
    );
    assert_eq!((added.first, added.ready), (2, vec![2, 3]));
}

#[test]
fn deferred_successors_wait_for_the_target_after_the_node_completes() {
    let mut s = map_run();
    add_items_and_gather(&mut s);
    s.defer(0, 4).unwrap();
    assert_eq!(s.complete(0).unwrap(), vec![]);
    assert_eq!(s.state(1).unwrap(), Pending);
    assert_eq!(s.complete_many(&[2, 3]).unwrap(), vec![4]);
    assert_eq!(s.complete(4).unwrap(), vec![1]);
    assert_eq!(s.complete(1).unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn the_target_done_before_the_node_releases_successors_with_the_node() {
    let mut s = map_run();
    let added = add(&mut s, &[(&[], &["g"])]);
    assert_eq!(added.ready, vec![2]);
    s.defer(0, 2).unwrap();
    assert_eq!(s.complete(2).unwrap(), vec![]);
    assert_eq!(s.complete(0).unwrap(), vec![1]);
}

#[test]
fn a_failed_or_skipped_target_skips_the_deferred_successors() {
    let mut s = map_run();
    add_items_and_gather(&mut s);
    s.defer(0, 4).unwrap();
    s.complete(0).unwrap();
    // 2 fails: the gather (4) is skipped, and through the deferred edge so is 1.
    assert_eq!(s.fail(2).unwrap(), vec![1, 4]);
    assert_eq!(s.state(1).unwrap(), Skipped);

    let mut s = map_run();
    add_items_and_gather(&mut s);
    s.defer(0, 4).unwrap();
    s.complete_many(&[2, 3]).unwrap();
    assert_eq!(s.fail(4).unwrap(), vec![1]);
    assert_eq!(s.fail(0).unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn a_run_that_added_no_nodes_may_defer_to_a_graph_node() {
    let g = from_keys(&[(&[], &["a"]), (&["a"], &["b"]), (&[], &["c"])]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    assert_eq!(s.start().unwrap(), vec![0, 2]);
    s.defer(0, 2).unwrap();
    assert_eq!(s.complete(0).unwrap(), vec![]);
    assert_eq!(s.complete(2).unwrap(), vec![1]);
}

#[test]
fn several_defers_on_one_node_wait_for_every_target() {
    let mut s = map_run();
    let added = add(&mut s, &[(&[], &["a"]), (&[], &["b"])]);
    assert_eq!(added.ready, vec![2, 3]);
    s.defer(0, 2).unwrap();
    s.defer(0, 3).unwrap();
    assert_eq!(s.complete(0).unwrap(), vec![]);
    assert_eq!(s.complete(3).unwrap(), vec![]);
    assert_eq!(s.complete(2).unwrap(), vec![1]);
}

#[test]
fn a_node_deferred_to_waits_for_its_own_defer_target_too() {
    // 0 defers to 2, which then (running) defers its own readers, 1 among them, to 3.
    let mut s = map_run();
    add(&mut s, &[(&[], &["a"]), (&[], &["b"])]);
    s.defer(0, 2).unwrap();
    s.defer(2, 3).unwrap();
    s.complete_many(&[0, 2]).unwrap();
    assert_eq!(s.state(1).unwrap(), Pending);
    assert_eq!(s.complete(3).unwrap(), vec![1]);
}

#[test]
fn defer_errors_name_the_node_and_change_nothing() {
    let mut s = map_run();
    add_items_and_gather(&mut s);
    let before = s.counts();
    assert_eq!(
        s.defer(1, 4).unwrap_err(),
        SchedError::NotRunning {
            node: 1,
            state: Pending
        }
    );
    assert_eq!(s.defer(0, 0).unwrap_err(), SchedError::DeferToSelf(0));
    assert_eq!(s.defer(0, 99).unwrap_err(), SchedError::OutOfRange(99));
    s.complete(2).unwrap();
    let done = s.defer(0, 2).unwrap_err();
    assert_eq!(done, SchedError::DeferTo { to: 2, state: Done });
    assert_eq!(done.node(), Some(2));
    assert!(done.to_string().contains("node 2"), "{done}");
    assert_eq!(s.counts().done, before.done + 1);
    // None of the refused calls left an edge: 1 runs right after 0.
    s.complete(3).unwrap();
    assert_eq!(s.complete(0).unwrap(), vec![1]);
}

#[test]
fn a_target_reading_a_successor_is_a_cycle() {
    // 2 reads the output of 1, which waits for 0.
    let mut s = map_run();
    add(&mut s, &[(&["res"], &["late"])]);
    assert_eq!(
        s.defer(0, 2).unwrap_err(),
        SchedError::Cycle(Cycle {
            path: vec![2, 1, 2]
        })
    );
    // A target that reads the node's own output is one of its successors.
    let added = add(&mut s, &[(&["items"], &["own"])]);
    assert_eq!(
        s.defer(0, added.first).unwrap_err(),
        SchedError::Cycle(Cycle { path: vec![3, 3] })
    );
    // Through added nodes: 4 <- 5 <- 6, and 4 reads 1's output.
    add(
        &mut s,
        &[(&["res"], &["p"]), (&["p"], &["q"]), (&["q"], &["r"])],
    );
    assert_eq!(
        s.defer(0, 6).unwrap_err(),
        SchedError::Cycle(Cycle {
            path: vec![6, 1, 4, 5, 6]
        })
    );
    // Nothing was deferred: 1 runs right after 0.
    assert_eq!(s.complete(0).unwrap(), vec![1, 3]);
}

#[test]
fn a_cycle_through_pending_graph_nodes_is_found_by_the_forward_search() {
    // 0 -> 1 -> 2 -> 3 in the graph; the target reads 3's output, so it waits on 1.
    let g = from_keys(&[
        (&[], &["a"]),
        (&["a"], &["b"]),
        (&["b"], &["c"]),
        (&["c"], &["d"]),
    ]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    s.start().unwrap();
    add(&mut s, &[(&["d"], &["t0"]), (&["t0"], &["t"])]);
    assert_eq!(
        s.defer(0, 5).unwrap_err(),
        SchedError::Cycle(Cycle {
            path: vec![5, 1, 2, 3, 4, 5]
        })
    );
    // A graph node that is not a successor's descendant is no cycle.
    let g = from_keys(&[
        (&[], &["a"]),
        (&["a"], &["b"]),
        (&[], &["c"]),
        (&["c"], &["d"]),
    ]);
    let mut s = Scheduler::new(Arc::new(g), None, Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    add(&mut s, &[(&["d"], &["t"])]);
    s.defer(0, 4).unwrap();
    assert_eq!(s.complete(0).unwrap(), vec![2]);
    assert_eq!(s.complete(2).unwrap(), vec![3]);
    assert_eq!(s.complete(3).unwrap(), vec![4]);
    assert_eq!(s.complete(4).unwrap(), vec![1]);
}

#[test]
fn a_deferred_edge_into_a_graph_node_is_followed_by_the_forward_search() {
    // 0 defers 1 to 2; then 3 (running) would defer its readers to a node reading 1.
    let g = from_keys(&[
        (&[], &["a"]),
        (&["a"], &["b"]),
        (&[], &["c"]),
        (&["c"], &["d"]),
    ]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    assert_eq!(s.start().unwrap(), vec![0, 2]);
    let added = add(&mut s, &[(&["b"], &["e"]), (&["d"], &["f"])]);
    assert_eq!(added.first, 4);
    // 5 reads 3's output; 4 waits on 1. Making 1 wait for 5 is fine...
    s.defer(0, 5).unwrap();
    // ...and then 2's reader 3 waiting for 4 closes 4 <- 1 <- 5 <- 3.
    assert_eq!(
        s.defer(2, 4).unwrap_err(),
        SchedError::Cycle(Cycle {
            path: vec![4, 3, 5, 1, 4]
        })
    );
}

#[test]
fn a_group_runs_at_most_its_capacity_while_other_nodes_go_on() {
    let mut s = map_run();
    let group = s.new_group(2).unwrap();
    let items: Vec<(&[&str], &[&str])> = vec![
        (&[], &["x0"]),
        (&[], &["x1"]),
        (&[], &["x2"]),
        (&[], &["x3"]),
        (&[], &["x4"]),
    ];
    let added = add_with(&mut s, &items, in_group(group)).unwrap();
    assert_eq!((added.first, added.ready), (2, vec![2, 3]));
    // Held nodes are Ready.
    assert_eq!((s.counts().ready, s.counts().running), (3, 3));
    // A node outside the group is not held up.
    let other = add(&mut s, &[(&[], &["y"])]);
    assert_eq!(other.ready, vec![7]);
    assert_eq!(s.complete(7).unwrap(), vec![]);
    assert_eq!(s.complete_many(&[2, 3]).unwrap(), vec![4, 5]);
    // fail and requeue free a slot too; take_ready hands the held node out.
    s.fail(4).unwrap();
    assert_eq!(s.take_ready(), vec![6]);
    s.requeue(5).unwrap();
    assert_eq!(s.take_ready(), vec![5]);
    assert_eq!(s.complete_many(&[5, 6, 0]).unwrap(), vec![1]);
    s.complete(1).unwrap();
    assert!(s.is_finished());
}

#[test]
fn held_nodes_go_in_priority_order_within_the_schedulers_capacity() {
    let g = from_keys(&[(&[], &["a"])]);
    let mut s = Scheduler::new(Arc::new(g), None, Some(2)).unwrap();
    s.start().unwrap();
    let group = s.new_group(1).unwrap();
    let priorities = [1.0, 3.0, 2.0];
    let added = add_with(
        &mut s,
        &[(&[], &["x"]), (&[], &["y"]), (&[], &["z"])],
        AddOptions {
            priorities: Some(&priorities),
            group: Some(group),
        },
    )
    .unwrap();
    assert_eq!(added.ready, vec![2]);
    // Node 0 holds one of the 2 slots; the group runs one at a time, best first.
    assert_eq!(s.complete(2).unwrap(), vec![3]);
    assert_eq!(s.complete(0).unwrap(), vec![]);
    assert_eq!(s.complete(3).unwrap(), vec![1]);
    assert_eq!(s.complete(1).unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn cancel_clears_the_groups() {
    let mut s = map_run();
    let group = s.new_group(1).unwrap();
    add_with(&mut s, &[(&[], &["x"]), (&[], &["y"])], in_group(group)).unwrap();
    assert_eq!(s.cancel(), vec![1, 3]);
    assert_eq!(s.complete(2).unwrap(), vec![]);
    assert_eq!(s.take_ready(), vec![]);
    s.complete(0).unwrap();
    assert!(s.is_finished());
    assert_eq!(s.counts().skipped, 2);
}

#[test]
fn group_and_priority_errors_change_nothing() {
    let mut s = map_run();
    assert_eq!(s.new_group(0).unwrap_err(), SchedError::GroupCapacity);
    let before = s.counts();
    let err = add_with(&mut s, &[(&[], &["x"])], in_group(0)).unwrap_err();
    assert_eq!(err, GrowError::UnknownGroup(0));
    let err = add_with(
        &mut s,
        &[(&[], &["x"])],
        AddOptions {
            priorities: Some(&[1.0, 2.0]),
            group: None,
        },
    )
    .unwrap_err();
    assert_eq!(
        err,
        GrowError::PrioritiesLength {
            expected: 1,
            got: 2
        }
    );
    assert_eq!(s.counts(), before);
    assert_eq!(add(&mut s, &[(&[], &["x"])]).first, 2);
}

#[test]
fn priorities_of_added_nodes_switch_a_scheduler_without_priorities() {
    let g = from_keys(&[(&[], &["a"]), (&[], &["b"]), (&[], &["c"])]);
    let mut s = Scheduler::new(Arc::new(g), None, Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    let priorities = [-1.0, 5.0];
    let added = add_with(
        &mut s,
        &[(&[], &["x"]), (&[], &["y"])],
        AddOptions {
            priorities: Some(&priorities),
            group: None,
        },
    )
    .unwrap();
    assert_eq!(added.ready, vec![]);
    // 4 (5.0) first, then the existing nodes (0) in id order, then 3 (-1.0).
    let order: Vec<u32> = [0, 4, 1, 2]
        .iter()
        .map(|&v| s.complete(v).unwrap()[0])
        .collect();
    assert_eq!(order, vec![4, 1, 2, 3]);
}

/// A reference: every node's state recomputed from scratch after each step, handing out
/// Ready nodes greedily by (priority, id), each within its group's capacity.
struct Naive {
    preds: Vec<Vec<usize>>,
    state: Vec<NodeState>,
    priority: Vec<f64>,
    group: Vec<Option<usize>>,
    group_capacity: Vec<usize>,
    capacity: Option<usize>,
}

impl Naive {
    fn settle(&mut self) {
        loop {
            let mut changed = false;
            for v in 0..self.state.len() {
                if self.state[v] != Pending {
                    continue;
                }
                let ps = &self.preds[v];
                if ps
                    .iter()
                    .any(|&p| matches!(self.state[p], Failed | Skipped))
                {
                    self.state[v] = Skipped;
                    changed = true;
                } else if ps.iter().all(|&p| self.state[p] == Done) {
                    self.state[v] = Ready;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    fn hand_out(&mut self) -> Vec<usize> {
        let mut ready: Vec<usize> = (0..self.state.len())
            .filter(|&v| self.state[v] == Ready)
            .collect();
        ready.sort_by(|&a, &b| {
            self.priority[b]
                .total_cmp(&self.priority[a])
                .then(a.cmp(&b))
        });
        let mut running = self.state.iter().filter(|&&s| s == Running).count();
        let mut out = Vec::new();
        for v in ready {
            if self.capacity.is_some_and(|c| running >= c) {
                break;
            }
            if let Some(g) = self.group[v] {
                let in_group = (0..self.state.len())
                    .filter(|&u| self.group[u] == Some(g) && self.state[u] == Running)
                    .count();
                if in_group >= self.group_capacity[g] {
                    continue;
                }
            }
            self.state[v] = Running;
            running += 1;
            out.push(v);
        }
        out
    }

    /// Whether `to` waits, directly or not, on `from`.
    fn depends(&self, to: usize, from: usize) -> bool {
        let mut stack = vec![to];
        let mut seen = vec![false; self.state.len()];
        while let Some(v) = stack.pop() {
            if v == from {
                return true;
            }
            if seen[v] || self.state[v] == Done {
                continue;
            }
            seen[v] = true;
            stack.extend(self.preds[v].iter().copied());
        }
        false
    }
}

#[test]
fn random_runs_with_defers_groups_and_priorities_match_a_naive_reference() {
    for seed in 0..300u64 {
        let mut rng = Rng(seed);
        let base = 1 + rng.below(8);
        let mut keys: Vec<String> = Vec::new();
        let mut nodes: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        let mut naive = Naive {
            preds: Vec::new(),
            state: Vec::new(),
            priority: Vec::new(),
            group: Vec::new(),
            group_capacity: Vec::new(),
            capacity: if rng.chance(50) {
                Some(1 + rng.below(4))
            } else {
                None
            },
        };
        for v in 0..base {
            let ins: Vec<String> = (0..rng.below(3).min(keys.len()))
                .map(|_| keys[rng.below(keys.len())].clone())
                .collect();
            let mut preds: Vec<usize> = ins.iter().map(|k| k[1..].parse().unwrap()).collect();
            preds.sort_unstable();
            preds.dedup();
            naive.preds.push(preds);
            naive.state.push(Pending);
            naive.priority.push(0.0);
            naive.group.push(None);
            keys.push(format!("k{v}"));
            nodes.push((ins, vec![format!("k{v}")]));
        }
        let spec: Vec<(Vec<&str>, Vec<&str>)> = nodes
            .iter()
            .map(|(i, o)| {
                (
                    i.iter().map(String::as_str).collect(),
                    o.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        let refs: Vec<(&[&str], &[&str])> = spec.iter().map(|(i, o)| (&i[..], &o[..])).collect();
        let mut s = Scheduler::new(Arc::new(from_keys(&refs)), None, naive.capacity).unwrap();
        let mut handed = s.start().unwrap();
        naive.settle();
        let mut expect = naive.hand_out();
        for step in 0..150 {
            let mut got: Vec<usize> = handed.iter().map(|&v| v as usize).collect();
            got.sort_unstable();
            expect.sort_unstable();
            assert_eq!(got, expect, "seed {seed} step {step}");
            for (v, &st) in naive.state.iter().enumerate() {
                assert_eq!(
                    s.state(v as u32).unwrap(),
                    st,
                    "seed {seed} step {step} node {v}"
                );
            }
            let running: Vec<usize> = (0..naive.state.len())
                .filter(|&v| naive.state[v] == Running)
                .collect();
            if running.is_empty() && naive.state.iter().all(|&st| st != Ready) && !rng.chance(30) {
                break;
            }
            let n = naive.state.len();
            let roll = rng.below(100);
            if running.is_empty() || roll < 20 {
                // A batch reading random keys (and earlier keys of the batch), maybe with
                // priorities, maybe in a new or an existing group.
                let m = 1 + rng.below(4);
                let mut batch_nodes: Vec<(Vec<String>, Vec<String>)> = Vec::new();
                for j in 0..m {
                    let ins: Vec<String> = (0..rng.below(3))
                        .map(|_| {
                            let k = rng.below(keys.len() + j);
                            if k < keys.len() {
                                keys[k].clone()
                            } else {
                                format!("k{}", n + k - keys.len())
                            }
                        })
                        .collect();
                    let mut preds: Vec<usize> =
                        ins.iter().map(|k| k[1..].parse().unwrap()).collect();
                    preds.sort_unstable();
                    preds.dedup();
                    naive.preds.push(preds);
                    batch_nodes.push((ins, vec![format!("k{}", n + j)]));
                }
                let priorities: Option<Vec<f64>> = rng
                    .chance(40)
                    .then(|| (0..m).map(|_| rng.below(5) as f64 - 2.0).collect());
                let group = if rng.chance(50) {
                    if naive.group_capacity.is_empty() || rng.chance(40) {
                        let capacity = 1 + rng.below(3);
                        naive.group_capacity.push(capacity);
                        Some(s.new_group(capacity).unwrap())
                    } else {
                        Some(rng.below(naive.group_capacity.len()) as u32)
                    }
                } else {
                    None
                };
                let spec: Vec<(Vec<&str>, Vec<&str>)> = batch_nodes
                    .iter()
                    .map(|(i, o)| {
                        (
                            i.iter().map(String::as_str).collect(),
                            o.iter().map(String::as_str).collect(),
                        )
                    })
                    .collect();
                let refs: Vec<(&[&str], &[&str])> =
                    spec.iter().map(|(i, o)| (&i[..], &o[..])).collect();
                let added = add_with(
                    &mut s,
                    &refs,
                    AddOptions {
                        priorities: priorities.as_deref(),
                        group,
                    },
                )
                .unwrap();
                assert_eq!(added.first as usize, n);
                for j in 0..m {
                    keys.push(format!("k{}", n + j));
                    naive.state.push(Pending);
                    naive
                        .priority
                        .push(priorities.as_ref().map_or(0.0, |p| p[j]));
                    naive.group.push(group.map(|g| g as usize));
                }
                naive.settle();
                expect = naive.hand_out();
                handed = added.ready;
            } else if roll < 35 {
                // A defer of a running node to a random unfinished node.
                let v = running[rng.below(running.len())];
                let to = rng.below(n);
                let successors: Vec<usize> = (0..n)
                    .filter(|&u| naive.state[u] == Pending && naive.preds[u].contains(&v))
                    .collect();
                let result = s.defer(v as u32, to as u32);
                if to == v {
                    assert_eq!(result, Err(SchedError::DeferToSelf(v as u32)));
                } else if !matches!(naive.state[to], Pending | Ready | Running) {
                    assert!(
                        matches!(result, Err(SchedError::DeferTo { .. })),
                        "{result:?}"
                    );
                } else if let Some(&s_) = successors.iter().find(|&&u| naive.depends(to, u)) {
                    let Err(SchedError::Cycle(Cycle { path })) = result else {
                        panic!("seed {seed}: defer({v}, {to}) waits on {s_}: {result:?}");
                    };
                    // A real closed path: to -> a successor, then each waits on the one before.
                    assert_eq!((path[0], path.last()), (to as u32, Some(&(to as u32))));
                    assert!(successors.contains(&(path[1] as usize)), "{path:?}");
                    for w in path[1..].windows(2) {
                        assert!(
                            naive.preds[w[1] as usize].contains(&(w[0] as usize)),
                            "{path:?}"
                        );
                    }
                } else {
                    result.unwrap();
                    for u in successors {
                        naive.preds[u].push(to);
                    }
                }
                handed = Vec::new();
                expect = Vec::new();
            } else {
                let v = running[rng.below(running.len())];
                match rng.below(10) {
                    0 => {
                        s.fail(v as u32).unwrap();
                        naive.state[v] = Failed;
                        naive.settle();
                        handed = s.take_ready();
                    }
                    1 => {
                        s.requeue(v as u32).unwrap();
                        naive.state[v] = Ready;
                        handed = s.take_ready();
                    }
                    2 if running.len() > 1 => {
                        let w = running
                            [(running.iter().position(|&x| x == v).unwrap() + 1) % running.len()];
                        handed = s.complete_many(&[v as u32, w as u32]).unwrap();
                        naive.state[v] = Done;
                        naive.state[w] = Done;
                        naive.settle();
                    }
                    _ => {
                        handed = s.complete(v as u32).unwrap();
                        naive.state[v] = Done;
                        naive.settle();
                    }
                }
                expect = naive.hand_out();
            }
        }
    }
}
