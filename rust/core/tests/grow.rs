//! Nodes added to a running scheduler (`Scheduler::add_nodes`).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{from_keys, Rng};
use dataflow_core::{GrowError, NodeState, Scheduler};

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

fn add(s: &mut Scheduler, nodes: &[(&[&str], &[&str])]) -> Result<dataflow_core::Added, GrowError> {
    let (names, counts) = batch(nodes);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    s.add_nodes(&names, &counts)
}

/// a -> b; the run is under way (0 running).
fn started() -> Scheduler {
    let g = from_keys(&[(&[], &["a"]), (&["a"], &["b"])]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    s
}

#[test]
fn added_nodes_wait_for_running_producers_and_run_at_once_on_done_ones() {
    let mut s = started();
    // 2 reads a (running), 3 reads 2's output, 4 reads nothing.
    let added = add(&mut s, &[(&["a"], &["c"]), (&["c"], &["d"]), (&[], &["e"])]).unwrap();
    assert_eq!(
        (added.first, added.ready, added.skipped),
        (2, vec![4], vec![])
    );
    assert_eq!(s.complete(0).unwrap(), vec![1, 2]);
    assert_eq!(s.complete(2).unwrap(), vec![3]);
    // A node reading a key already done is ready in the same call.
    let added = add(&mut s, &[(&["c", "b"], &["f"]), (&["c"], &["g"])]).unwrap();
    assert_eq!((added.first, added.ready), (5, vec![6]));
    for v in [1, 3, 4] {
        s.complete(v).unwrap();
    }
    assert_eq!(s.complete(6).unwrap(), vec![]);
    assert!(!s.is_finished());
    assert_eq!(s.complete(5).unwrap(), vec![]);
    assert!(s.is_finished());
    assert_eq!(s.counts().done, 7);
}

#[test]
fn nodes_reading_a_failed_node_are_skipped_with_their_batch_successors() {
    let mut s = started();
    let added = add(&mut s, &[(&["a"], &["c"]), (&["c"], &["d"])]).unwrap();
    assert_eq!(added.ready, vec![]);
    assert_eq!(s.fail(0).unwrap(), vec![1, 2, 3]);
    let added = add(&mut s, &[(&["x"], &["y"]), (&["a"], &["x"]), (&[], &["z"])]).unwrap();
    assert_eq!((added.ready, added.skipped), (vec![6], vec![4, 5]));
    assert_eq!(s.state(4).unwrap(), Skipped);
}

#[test]
fn errors_name_the_nodes_and_keys_and_change_nothing() {
    let mut s = started();
    let before = s.counts();
    let dup = add(&mut s, &[(&[], &["c"]), (&[], &["c"])]).unwrap_err();
    assert_eq!(
        dup,
        GrowError::DuplicateOutput {
            key: "c".into(),
            first: 0,
            second: 1
        }
    );
    let exists = add(&mut s, &[(&[], &["q"]), (&[], &["b"])]).unwrap_err();
    assert_eq!(
        exists,
        GrowError::OutputExists {
            node: 1,
            key: "b".into(),
            producer: Some(1)
        }
    );
    let unknown = add(&mut s, &[(&["nope"], &["c"])]).unwrap_err();
    assert_eq!(
        unknown,
        GrowError::UnknownInput {
            node: 0,
            key: "nope".into()
        }
    );
    assert!(unknown.to_string().contains("'nope'"), "{unknown}");
    let cycle = add(
        &mut s,
        &[
            (&[], &["p"]),
            (&["e", "p"], &["c"]),
            (&["c"], &["d"]),
            (&["d"], &["e"]),
        ],
    )
    .unwrap_err();
    let GrowError::Cycle { path } = &cycle else {
        panic!("{cycle:?}")
    };
    assert_eq!(path.len(), 4, "{path:?}");
    assert_eq!(path.first(), path.last());
    let mut on_it = path[..3].to_vec();
    on_it.sort_unstable();
    assert_eq!(on_it, vec![1, 2, 3]);
    let own = add(&mut s, &[(&["c"], &["c"])]).unwrap_err();
    assert_eq!(own, GrowError::Cycle { path: vec![0, 0] });
    // The failed batches left no keys behind: the same ones are accepted now.
    assert_eq!(s.counts(), before);
    let added = add(&mut s, &[(&[], &["c"]), (&["c"], &["d"])]).unwrap();
    assert_eq!((added.first, added.ready), (2, vec![2]));
    let again = add(&mut s, &[(&[], &["d"])]).unwrap_err();
    assert_eq!(
        again,
        GrowError::OutputExists {
            node: 0,
            key: "d".into(),
            producer: Some(3)
        }
    );
}

#[test]
fn a_node_may_list_an_output_twice() {
    let mut s = started();
    add(&mut s, &[(&[], &["c", "c"]), (&[], &["d"])]).unwrap();
    let err = add(&mut s, &[(&[], &["d"])]).unwrap_err();
    assert_eq!(
        err,
        GrowError::OutputExists {
            node: 0,
            key: "d".into(),
            producer: Some(3)
        }
    );
}

#[test]
fn counts_must_add_up() {
    let mut s = started();
    let err = s.add_nodes(&["a"], &[(1, 1)]).unwrap_err();
    assert_eq!(
        err,
        GrowError::Counts {
            expected: 2,
            got: 1
        }
    );
}

#[test]
fn before_start_added_nodes_wait_for_start() {
    let g = from_keys(&[(&[], &["a"])]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    let added = add(&mut s, &[(&[], &["b"]), (&["a"], &["c"])]).unwrap();
    assert_eq!(added.ready, vec![]);
    assert_eq!(s.start().unwrap(), vec![0, 1]);
    assert_eq!(s.complete(0).unwrap(), vec![2]);
}

#[test]
fn capacity_and_priorities_apply_to_added_nodes() {
    let g = from_keys(&[(&[], &["a"]), (&[], &["b"])]);
    let mut s = Scheduler::new(Arc::new(g), Some(vec![1.0, -1.0]), Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    let added = add(&mut s, &[(&[], &["c"]), (&[], &["d"])]).unwrap();
    assert_eq!(added.ready, vec![]);
    // Added nodes have priority 0: above node 1 (-1), in id order among themselves.
    assert_eq!(s.complete(0).unwrap(), vec![2]);
    assert_eq!(s.complete(2).unwrap(), vec![3]);
    assert_eq!(s.complete(3).unwrap(), vec![1]);
}

/// A reference scheduler: every node's state recomputed from scratch after each step.
struct Naive {
    preds: Vec<Vec<usize>>,
    state: Vec<NodeState>,
}

impl Naive {
    fn settle(&mut self, started: bool) -> Vec<usize> {
        let mut fresh = Vec::new();
        // Ids are in dependency order (a node reads only older keys): one pass suffices.
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
            } else if started && ps.iter().all(|&p| self.state[p] == Done) {
                self.state[v] = Running;
                fresh.push(v);
            }
        }
        fresh
    }
}

#[test]
fn random_growth_matches_a_naive_reference() {
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let mut keys: Vec<String> = Vec::new();
        let mut producer: HashMap<String, usize> = HashMap::new();
        let mut naive = Naive {
            preds: Vec::new(),
            state: Vec::new(),
        };
        let base = 1 + rng.below(20);
        let mut nodes: Vec<(Vec<String>, Vec<String>)> = Vec::new();
        for v in 0..base {
            let ins: Vec<String> = (0..rng.below(3).min(keys.len()))
                .map(|_| keys[rng.below(keys.len())].clone())
                .collect();
            let out = format!("k{v}");
            naive.preds.push(ins.iter().map(|k| producer[k]).collect());
            naive.state.push(Pending);
            producer.insert(out.clone(), v);
            keys.push(out.clone());
            nodes.push((ins, vec![out]));
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
        let mut s = Scheduler::new(Arc::new(from_keys(&refs)), None, None).unwrap();
        let mut running = s.start().unwrap();
        assert_eq!(
            running.iter().map(|&v| v as usize).collect::<Vec<_>>(),
            naive.settle(true)
        );
        for _step in 0..200 {
            if running.is_empty() && !rng.chance(30) {
                break;
            }
            if running.is_empty() || rng.chance(25) {
                // A batch of new nodes: each reads random existing or earlier batch keys,
                // listed in random order so the batch is not in dependency order.
                let m = 1 + rng.below(6);
                let first = naive.state.len();
                let outs: Vec<String> = (0..m).map(|j| format!("k{}", first + j)).collect();
                let mut perm: Vec<usize> = (0..m).collect();
                for i in (1..m).rev() {
                    perm.swap(i, rng.below(i + 1));
                }
                // perm[j]: the position of dependency-rank j in the batch.
                let mut batch_nodes: Vec<(Vec<String>, Vec<String>)> = vec![Default::default(); m];
                let mut rank_preds: Vec<Vec<usize>> = vec![Vec::new(); m];
                for rank in 0..m {
                    let mut ins = Vec::new();
                    for _ in 0..rng.below(4) {
                        if rank > 0 && rng.chance(50) {
                            let r = rng.below(rank);
                            ins.push(outs[perm[r]].clone());
                            rank_preds[rank].push(first + perm[r]);
                        } else {
                            let k = keys[rng.below(keys.len())].clone();
                            rank_preds[rank].push(producer[&k]);
                            ins.push(k);
                        }
                    }
                    batch_nodes[perm[rank]] = (ins, vec![outs[perm[rank]].clone()]);
                }
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
                let added = add(&mut s, &refs).unwrap();
                assert_eq!(added.first as usize, first);
                naive.preds.resize(first + m, Vec::new());
                naive.state.resize(first + m, Pending);
                for rank in 0..m {
                    naive.preds[first + perm[rank]] = rank_preds[rank].clone();
                }
                for (j, out) in outs.iter().enumerate() {
                    producer.insert(out.clone(), first + j);
                    keys.push(out.clone());
                }
                // The naive pass needs dependency order: settle batch nodes by rank.
                let mut expect_ready = Vec::new();
                let mut expect_skipped = Vec::new();
                for &pos in &perm {
                    let v = first + pos;
                    let ps = &naive.preds[v];
                    if ps
                        .iter()
                        .any(|&p| matches!(naive.state[p], Failed | Skipped))
                    {
                        naive.state[v] = Skipped;
                        expect_skipped.push(v);
                    } else if ps.iter().all(|&p| naive.state[p] == Done) {
                        naive.state[v] = Running;
                        expect_ready.push(v);
                    }
                }
                expect_ready.sort_unstable();
                expect_skipped.sort_unstable();
                let got: Vec<usize> = added.ready.iter().map(|&v| v as usize).collect();
                let skipped: Vec<usize> = added.skipped.iter().map(|&v| v as usize).collect();
                assert_eq!(
                    (got, skipped),
                    (expect_ready, expect_skipped),
                    "seed {seed}"
                );
                running.extend(added.ready);
            } else {
                let v = running.swap_remove(rng.below(running.len()));
                let mut handed;
                if rng.chance(10) {
                    s.fail(v).unwrap();
                    naive.state[v as usize] = Failed;
                    handed = Vec::new();
                } else {
                    handed = s.complete(v).unwrap();
                    naive.state[v as usize] = Done;
                }
                // Readiness never depends on ids being ordered: recompute to a fixpoint.
                let mut expect = Vec::new();
                loop {
                    let fresh = settle_any_order(&mut naive);
                    if fresh.is_empty() {
                        break;
                    }
                    expect.extend(fresh);
                }
                expect.retain(|&x| naive.state[x] == Running);
                expect.sort_unstable();
                handed.sort_unstable();
                assert_eq!(
                    handed.iter().map(|&x| x as usize).collect::<Vec<_>>(),
                    expect,
                    "seed {seed}"
                );
                running.extend(handed);
            }
            for (v, &st) in naive.state.iter().enumerate() {
                assert_eq!(s.state(v as u32).unwrap(), st, "seed {seed} node {v}");
            }
        }
    }
}

/// `Naive::settle` for ids not in dependency order: one pass, returns what changed.
fn settle_any_order(naive: &mut Naive) -> Vec<usize> {
    let mut changed = Vec::new();
    for v in 0..naive.state.len() {
        if naive.state[v] != Pending {
            continue;
        }
        let ps = &naive.preds[v];
        if ps
            .iter()
            .any(|&p| matches!(naive.state[p], Failed | Skipped))
        {
            naive.state[v] = Skipped;
            changed.push(v);
        } else if ps.iter().all(|&p| naive.state[p] == Done) {
            naive.state[v] = Running;
            changed.push(v);
        }
    }
    changed
}

#[test]
fn a_large_batch_and_a_recursive_fan_out() {
    let g = from_keys(&[(&[], &["root"])]);
    let mut s = Scheduler::new(Arc::new(g), None, None).unwrap();
    s.start().unwrap();
    // One batch of 100,000 nodes reading the running root.
    let outs: Vec<String> = (0..100_000).map(|i| format!("n{i}")).collect();
    let mut names = Vec::with_capacity(200_000);
    for o in &outs {
        names.push("root");
        names.push(o.as_str());
    }
    let added = s.add_nodes(&names, &vec![(1, 1); 100_000]).unwrap();
    assert!(added.ready.is_empty());
    assert_eq!(s.complete(0).unwrap().len(), 100_000);
    // Each finished node adds two children reading its key, to depth 4.
    let mut frontier: Vec<(u32, String)> = (1..=100_000)
        .map(|v| (v, outs[v as usize - 1].clone()))
        .collect();
    for depth in 0..2 {
        let mut next = Vec::new();
        for (v, key) in frontier.iter().take(20_000) {
            let kids = [format!("{key}.{depth}a"), format!("{key}.{depth}b")];
            let names = [
                key.as_str(),
                kids[0].as_str(),
                key.as_str(),
                kids[1].as_str(),
            ];
            let added = s.add_nodes(&names, &[(1, 1), (1, 1)]).unwrap();
            assert!(added.ready.is_empty());
            s.complete(*v).unwrap();
            next.push((added.first, kids[0].clone()));
            next.push((added.first + 1, kids[1].clone()));
        }
        for (v, _) in frontier.iter().skip(20_000) {
            s.complete(*v).unwrap();
        }
        frontier = next;
    }
    for (v, _) in &frontier {
        assert_eq!(s.complete(*v).unwrap(), vec![]);
    }
    assert!(s.is_finished());
    assert_eq!(s.counts().done, 1 + 100_000 + 40_000 + 40_000);
}
