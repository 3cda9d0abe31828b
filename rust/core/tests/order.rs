//! Topological order, levels, critical path and bottom levels.

mod common;

use common::{from_edges, from_keys};
use dataflow_core::{Cycle, GraphError, Levels};

#[test]
fn topological_order_is_lexicographically_smallest() {
    // 3 -> 1, 2 -> 0: ids 2 and 3 are ready first; 2 goes first, then 0 (now ready and smallest).
    let g = from_edges(4, &[(3, 1), (2, 0)]);
    assert_eq!(g.topological_order().unwrap(), vec![2, 0, 3, 1]);
    // Forward-only edges: the ids are the order.
    let g = from_edges(4, &[(0, 3), (1, 2)]);
    assert_eq!(g.topological_order().unwrap(), vec![0, 1, 2, 3]);
}

#[test]
fn levels_group_by_longest_distance_from_a_root() {
    let g = from_edges(6, &[(5, 0), (0, 1), (5, 1), (1, 2), (3, 2)]);
    let levels = g.levels().unwrap();
    assert_eq!(levels.len(), 4);
    assert!(!levels.is_empty());
    assert_eq!(levels.get(0), &[3, 4, 5]);
    assert_eq!(levels.get(1), &[0]);
    assert_eq!(levels.get(2), &[1]);
    assert_eq!(levels.get(3), &[2]);
    assert!(levels.get(4).is_empty());
    let all: Vec<&[u32]> = levels.iter().collect();
    assert_eq!(all, vec![&[3, 4, 5][..], &[0][..], &[1][..], &[2][..]]);
    assert_eq!(
        levels,
        Levels {
            offsets: vec![0, 3, 4, 5, 6],
            nodes: vec![3, 4, 5, 0, 1, 2]
        }
    );
}

#[test]
fn critical_path_unweighted_and_weighted() {
    // 0 -> 1 -> 3, 0 -> 2 -> 3, 2 -> 4
    let g = from_edges(5, &[(0, 1), (1, 3), (0, 2), (2, 3), (2, 4)]);
    // Ties go to the smallest ids.
    assert_eq!(g.critical_path(None).unwrap(), (3.0, vec![0, 1, 3]));
    let w = [1.0, 1.0, 5.0, 1.0, 2.0];
    assert_eq!(g.critical_path(Some(&w)).unwrap(), (8.0, vec![0, 2, 4]));
    let w = [1.0, 10.0, 5.0, 1.0, 2.0];
    assert_eq!(g.critical_path(Some(&w)).unwrap(), (12.0, vec![0, 1, 3]));
}

#[test]
fn critical_path_runs_root_to_leaf_even_with_negative_weights() {
    let g = from_edges(3, &[(0, 1), (1, 2)]);
    let w = [-1.0, -1.0, -1.0];
    assert_eq!(g.critical_path(Some(&w)).unwrap(), (-3.0, vec![0, 1, 2]));
}

#[test]
fn bottom_levels() {
    let g = from_edges(5, &[(0, 1), (1, 3), (0, 2), (2, 3), (2, 4)]);
    assert_eq!(
        g.bottom_levels(None).unwrap(),
        vec![3.0, 2.0, 2.0, 1.0, 1.0]
    );
    let w = [1.0, 1.0, 5.0, 1.0, 2.0];
    assert_eq!(
        g.bottom_levels(Some(&w)).unwrap(),
        vec![8.0, 2.0, 7.0, 1.0, 2.0]
    );
}

#[test]
fn weights_length_is_checked() {
    let g = from_edges(3, &[(0, 1)]);
    let err = GraphError::WeightsLength {
        expected: 3,
        got: 2,
    };
    assert_eq!(g.critical_path(Some(&[1.0, 2.0])), Err(err.clone()));
    assert_eq!(g.bottom_levels(Some(&[1.0, 2.0])), Err(err));
}

#[test]
fn cycles_are_errors_everywhere() {
    let g = from_keys(&[(&["b"], &["a"]), (&["a"], &["b"]), (&[], &["c"])]);
    let cycle = Cycle {
        path: vec![0, 1, 0],
    };
    assert_eq!(g.topological_order(), Err(cycle.clone()));
    assert_eq!(g.levels(), Err(cycle.clone()));
    assert_eq!(g.critical_path(None), Err(GraphError::Cycle(cycle.clone())));
    assert_eq!(g.bottom_levels(None), Err(GraphError::Cycle(cycle)));
}

#[test]
fn million_node_chain_needs_no_recursion() {
    // Built backwards (each node consumes the next one's key) so the general,
    // non-forward code paths run, then forwards through explicit edges.
    let n = 1_000_000u32;
    let names: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let mut b = dataflow_core::GraphBuilder::with_capacity(n as usize, n as usize);
    for i in 0..n as usize {
        let input = names.get(i + 1).map(|s| s.as_str());
        b.add_node(input, [names[i].as_str()]);
    }
    let g = b.build();
    assert!(g.validate(true).is_empty());
    let order = g.topological_order().unwrap();
    assert_eq!(order[0], n - 1);
    assert_eq!(order[n as usize - 1], 0);
    assert_eq!(g.levels().unwrap().len(), n as usize);
    assert_eq!(g.critical_path(None).unwrap().1.len(), n as usize);
    assert_eq!(g.bottom_levels(None).unwrap()[n as usize - 1], n as f64);
    assert_eq!(g.ancestors(&[0]).len(), n as usize - 1);
    assert_eq!(g.descendants(&[n - 1]).len(), n as usize - 1);

    // Closing the chain into one huge cycle exercises Tarjan's explicit stack.
    let mut b = dataflow_core::GraphBuilder::new();
    b.add_nodes(n);
    for i in 0..n {
        b.add_edge(i, (i + 1) % n);
    }
    let g = b.build();
    let problems = g.validate(false);
    assert_eq!(problems.len(), 1);
    match &problems[0] {
        dataflow_core::Problem::Cycle(c) => {
            assert_eq!(c.path.len(), n as usize + 1);
            assert_eq!((c.path[0], c.path[1], c.path[n as usize]), (0, 1, 0));
        }
        other => panic!("expected a cycle, got {other:?}"),
    }
}
