//! Building graphs from keys and explicit edges, and the simple queries on them.

mod common;

use common::{from_edges, from_keys};
use dataflow_core::{Cycle, GraphBuilder, GraphError, Problem};

fn diamond() -> dataflow_core::Graph {
    // 0 -> {1, 2} -> 3
    from_keys(&[
        (&["raw"], &["a"]),
        (&["a"], &["b"]),
        (&["a"], &["c"]),
        (&["b", "c"], &["d"]),
    ])
}

#[test]
fn ids_are_insertion_order() {
    let mut b = GraphBuilder::with_capacity(3, 3);
    assert_eq!(b.add_node([], ["x"]), 0);
    b.add_nodes(2);
    assert_eq!(b.add_node(["x"], []), 3);
    let g = b.build();
    assert_eq!(g.node_count(), 4);
    assert_eq!(g.successors(0), &[3]);
    assert!(g.node_inputs(1).is_empty() && g.node_outputs(2).is_empty());
}

#[test]
fn edges_come_from_keys() {
    let g = diamond();
    assert_eq!(g.node_count(), 4);
    assert_eq!(g.edge_count(), 4);
    assert_eq!(g.key_count(), 5);
    assert_eq!(
        g.edges().collect::<Vec<_>>(),
        vec![(0, 1), (0, 2), (1, 3), (2, 3)]
    );
    assert_eq!(g.successors(0), &[1, 2]);
    assert_eq!(g.predecessors(3), &[1, 2]);
    assert_eq!(g.roots(), vec![0]);
    assert_eq!(g.leaves(), vec![3]);
}

#[test]
fn key_queries() {
    let g = diamond();
    let a = g.key_id("a").unwrap();
    assert_eq!(g.key_name(a), "a");
    assert_eq!(g.key_id("nope"), None);
    assert_eq!(g.producer(a), Some(0));
    assert_eq!(g.consumers(a), &[1, 2]);
    let raw = g.key_id("raw").unwrap();
    assert_eq!(g.producer(raw), None);
    assert_eq!(g.consumers(raw), &[0]);
    assert_eq!(
        g.node_inputs(3),
        &[g.key_id("b").unwrap(), g.key_id("c").unwrap()]
    );
    assert_eq!(g.node_outputs(3), &[g.key_id("d").unwrap()]);
    assert!(g.consumers(g.key_id("d").unwrap()).is_empty());
}

#[test]
fn keys_of_all_lengths_and_bytes_are_distinct() {
    // Short keys live inside the interning table; these differ only in length, a NUL
    // byte, or past the first 8 bytes.
    let names = [
        "",
        "a",
        "a\0",
        "a\0\0",
        "abcdefg",
        "abcdefg\0",
        "abcdefgh",
        "abcdefgh1",
        "abcdefgh2",
        "ключ",
        "ключи",
        "\u{7}",
        "\u{7}\u{7}",
    ];
    let mut b = GraphBuilder::new();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(b.add_node([], [*name]), i as u32);
    }
    let g = b.build();
    assert_eq!(g.key_count(), names.len());
    for (i, name) in names.iter().enumerate() {
        let k = g.key_id(name).unwrap();
        assert_eq!(k, i as u32);
        assert_eq!(g.key_name(k), *name);
        assert_eq!(g.producer(k), Some(i as u32));
    }
    assert!(g.validate(true).is_empty());
}

#[test]
fn many_keys_survive_table_growth() {
    let mut b = GraphBuilder::new();
    let names: Vec<String> = (0..20_000).map(|i| format!("key-number-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let prev = if i > 0 {
            Some(names[i - 1].as_str())
        } else {
            None
        };
        b.add_node(prev, [name.as_str(), &name[..name.len().min(5)]]);
    }
    let g = b.build();
    for (i, name) in names.iter().enumerate() {
        assert_eq!(g.producer(g.key_id(name).unwrap()), Some(i as u32));
    }
    assert_eq!(g.key_id("key-n").and_then(|k| g.producer(k)), Some(0));
    assert_eq!(g.edge_count(), names.len() - 1);
}

#[test]
fn key_ids_follow_first_mention() {
    let mut b = GraphBuilder::new();
    b.add_node(["b"], ["a"]);
    b.declare_external("c");
    b.add_node(["c", "a"], ["d"]);
    b.declare_external("a");
    let g = b.build();
    let ids: Vec<_> = ["b", "a", "c", "d"].iter().map(|k| g.key_id(k)).collect();
    assert_eq!(ids, vec![Some(0), Some(1), Some(2), Some(3)]);
    assert!(g.is_external(1) && g.is_external(2));
    assert_eq!(g.producer(1), Some(0));
}

#[test]
fn keys_interned_in_batches_keep_their_nodes() {
    // Enough keys to cross many internal batches, with externals declared in between.
    let mut b = GraphBuilder::new();
    let n = 10_000u32;
    for i in 0..n {
        let input = format!("key-{}", i / 2);
        let output = format!("key-{i}");
        b.add_node([input.as_str(), "shared"], [output.as_str()]);
        if i % 997 == 0 {
            b.declare_external(&format!("ext-{i}"));
        }
    }
    b.declare_external("shared");
    let g = b.build();
    assert_eq!(g.key_count() as u32, n + 1 + n.div_ceil(997));
    for i in 0..n {
        let inputs: Vec<&str> = g.node_inputs(i).iter().map(|&k| g.key_name(k)).collect();
        assert_eq!(inputs, vec![format!("key-{}", i / 2).as_str(), "shared"]);
        assert_eq!(g.key_name(g.node_outputs(i)[0]), format!("key-{i}"));
        // Node i consumes the output of node i / 2 (itself for node 0).
        assert_eq!(g.predecessors(i), &[i / 2]);
    }
    assert!(g.is_external(g.key_id("ext-997").unwrap()));
    assert!(g.is_external(g.key_id("shared").unwrap()));
    assert_eq!(
        g.validate(true),
        vec![Problem::Cycle(Cycle { path: vec![0, 0] })]
    );
}

#[test]
fn repeated_keys_and_edges_are_deduplicated() {
    let mut b = GraphBuilder::new();
    b.add_node([], ["x", "y"]);
    b.add_node(["x", "y", "x"], ["x2"]);
    b.add_edge(0, 1);
    b.add_edge(0, 1);
    let g = b.build();
    assert_eq!(g.edge_count(), 1);
    assert_eq!(g.successors(0), &[1]);
    assert_eq!(g.predecessors(1), &[0]);
    // node_inputs keeps what was given; consumers lists each node once.
    assert_eq!(g.node_inputs(1).len(), 3);
    assert_eq!(g.consumers(g.key_id("x").unwrap()), &[1]);
}

#[test]
fn explicit_edges_join_key_edges() {
    let mut b = GraphBuilder::new();
    b.add_nodes(3);
    b.add_node([], ["k"]);
    b.add_node(["k"], []);
    b.add_edge(2, 0);
    b.add_edge(4, 1);
    let g = b.build();
    assert_eq!(g.edges().collect::<Vec<_>>(), vec![(2, 0), (3, 4), (4, 1)]);
    assert_eq!(g.topological_order().unwrap(), vec![2, 0, 3, 4, 1]);
}

#[test]
fn consumer_before_producer() {
    let g = from_keys(&[(&["late"], &[]), (&[], &["late"])]);
    assert_eq!(g.edges().collect::<Vec<_>>(), vec![(1, 0)]);
    assert_eq!(g.topological_order().unwrap(), vec![1, 0]);
}

#[test]
fn external_keys() {
    let mut b = GraphBuilder::new();
    b.declare_external("config");
    b.add_node(["config", "data"], ["out"]);
    let g = b.build();
    let config = g.key_id("config").unwrap();
    let data = g.key_id("data").unwrap();
    assert!(g.is_external(config));
    assert!(!g.is_external(data));
    assert!(!g.is_external(999));
    assert_eq!(g.validate(false), vec![]);
    assert_eq!(
        g.validate(true),
        vec![Problem::MissingInput { node: 0, key: data }]
    );
}

#[test]
fn out_of_range_ids_do_not_panic() {
    let g = diamond();
    assert!(g.successors(99).is_empty());
    assert!(g.predecessors(u32::MAX).is_empty());
    assert!(g.node_inputs(4).is_empty());
    assert!(g.node_outputs(4).is_empty());
    assert_eq!(g.key_name(99), "");
    assert_eq!(g.producer(99), None);
    assert!(g.consumers(99).is_empty());
    assert_eq!(g.check_node(3), Ok(()));
    assert_eq!(g.check_node(4), Err(GraphError::NodeOutOfRange(4)));
    assert_eq!(
        g.check_nodes(&[0, 1, 7, 8]),
        Err(GraphError::NodeOutOfRange(7))
    );
    assert_eq!(g.ancestors(&[99]), Vec::<u32>::new());
    assert_eq!(g.ready_given(&[0, 99]), vec![1, 2]);
}

#[test]
fn ancestors_and_descendants() {
    let g = diamond();
    assert_eq!(g.ancestors(&[3]), vec![0, 1, 2]);
    assert_eq!(g.ancestors(&[1]), vec![0]);
    assert_eq!(g.ancestors(&[0]), Vec::<u32>::new());
    // A seed appears only when it is an ancestor of another seed.
    assert_eq!(g.ancestors(&[1, 3]), vec![0, 1, 2]);
    assert_eq!(g.descendants(&[0]), vec![1, 2, 3]);
    assert_eq!(g.descendants(&[1, 2]), vec![3]);
    assert_eq!(g.descendants(&[3]), Vec::<u32>::new());
    assert_eq!(g.descendants(&[]), Vec::<u32>::new());
    // On a cycle a seed is its own ancestor.
    let c = from_edges(3, &[(0, 1), (1, 0), (1, 2)]);
    assert_eq!(c.ancestors(&[0]), vec![0, 1]);
    assert_eq!(c.descendants(&[2]), Vec::<u32>::new());
}

#[test]
fn required_for_keys() {
    let g = diamond();
    assert_eq!(g.required_for(&["b"]).unwrap(), vec![0, 1]);
    assert_eq!(g.required_for(&["d"]).unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(g.required_for(&["b", "c"]).unwrap(), vec![0, 1, 2]);
    assert_eq!(g.required_for(&[]).unwrap(), Vec::<u32>::new());
    assert_eq!(g.required_for(&["b", "nope"]), Err("nope".to_string()));
    // "raw" exists but nobody produces it.
    assert_eq!(g.required_for(&["raw"]), Err("raw".to_string()));
}

#[test]
fn ready_given_completed() {
    let g = diamond();
    assert_eq!(g.ready_given(&[]), vec![0]);
    assert_eq!(g.ready_given(&[0]), vec![1, 2]);
    assert_eq!(g.ready_given(&[0, 1]), vec![2]);
    assert_eq!(g.ready_given(&[0, 1, 2]), vec![3]);
    assert_eq!(g.ready_given(&[0, 1, 2, 3]), Vec::<u32>::new());
    // Completed nodes whose predecessors are not complete do not matter.
    assert_eq!(g.ready_given(&[3]), vec![0]);
}

#[test]
fn empty_graph() {
    let g = GraphBuilder::new().build();
    assert_eq!((g.node_count(), g.edge_count(), g.key_count()), (0, 0, 0));
    assert!(g.roots().is_empty() && g.leaves().is_empty());
    assert_eq!(g.edges().count(), 0);
    assert!(g.validate(true).is_empty());
    assert_eq!(g.topological_order().unwrap(), Vec::<u32>::new());
    assert!(g.levels().unwrap().is_empty());
    assert_eq!(g.critical_path(None).unwrap(), (0.0, vec![]));
    assert!(g.bottom_levels(None).unwrap().is_empty());
    assert!(g.ready_given(&[]).is_empty());
}

#[test]
fn validate_reports_every_problem_in_order() {
    let mut b = GraphBuilder::new();
    b.add_node(["missing", "ext"], ["x"]); // 0
    b.add_node(["x", "y"], ["y"]); // 1: self loop through "y"
    b.add_node(["x"], ["x", "z"]); // 2: duplicate producer of "x"
    b.add_node(["z"], ["x"]); // 3: duplicate producer of "x" again
    b.add_nodes(2); // 4, 5
    b.add_edge(4, 5);
    b.add_edge(5, 4);
    b.add_edge(7, 0);
    b.add_edge(0, 6);
    b.declare_external("ext");
    let g = b.build();
    let key = |name| g.key_id(name).unwrap();
    let mut expected = vec![
        Problem::BadEdge { from: 7, to: 0 },
        Problem::BadEdge { from: 0, to: 6 },
        Problem::DuplicateOutput {
            key: key("x"),
            first: 0,
            second: 2,
        },
        Problem::DuplicateOutput {
            key: key("x"),
            first: 0,
            second: 3,
        },
    ];
    let cycles = vec![
        Problem::Cycle(Cycle { path: vec![1, 1] }),
        Problem::Cycle(Cycle {
            path: vec![4, 5, 4],
        }),
    ];
    let mut lenient = expected.clone();
    lenient.extend(cycles.iter().cloned());
    assert_eq!(g.validate(false), lenient);
    expected.push(Problem::MissingInput {
        node: 0,
        key: key("missing"),
    });
    expected.extend(cycles);
    assert_eq!(g.validate(true), expected);
}

#[test]
fn a_node_listing_its_output_twice_is_not_a_duplicate() {
    let g = from_keys(&[(&[], &["a", "a"]), (&["a"], &[])]);
    assert!(g.validate(true).is_empty());
    assert_eq!(g.node_outputs(0).len(), 2);
}

#[test]
fn an_extra_producer_listing_the_key_twice_is_reported_once() {
    let g = from_keys(&[(&[], &["a"]), (&[], &["a", "b", "a"])]);
    let a = g.key_id("a").unwrap();
    assert_eq!(
        g.validate(false),
        vec![Problem::DuplicateOutput {
            key: a,
            first: 0,
            second: 1
        }]
    );
}

#[test]
fn missing_input_reported_once_per_node() {
    let g = from_keys(&[(&["m", "m"], &[]), (&["m"], &[])]);
    let m = g.key_id("m").unwrap();
    assert_eq!(
        g.validate(true),
        vec![
            Problem::MissingInput { node: 0, key: m },
            Problem::MissingInput { node: 1, key: m },
        ]
    );
}

#[test]
fn self_edges_are_cycles() {
    let g = from_keys(&[(&["a"], &["a"])]);
    assert_eq!(g.edge_count(), 1);
    assert_eq!(
        g.validate(false),
        vec![Problem::Cycle(Cycle { path: vec![0, 0] })]
    );
    let g = from_edges(2, &[(1, 1)]);
    assert_eq!(
        g.validate(false),
        vec![Problem::Cycle(Cycle { path: vec![1, 1] })]
    );
    assert_eq!(g.topological_order(), Err(Cycle { path: vec![1, 1] }));
}

#[test]
fn cycle_paths_start_at_the_smallest_id_and_are_shortest() {
    // Component {2, 3, 5, 6}: 2 -> 5 -> 6 -> 2 and 2 -> 3 -> 2; shortest through 2 is [2, 3, 2].
    let g = from_edges(8, &[(0, 2), (2, 5), (5, 6), (6, 2), (2, 3), (3, 2), (6, 7)]);
    assert_eq!(
        g.validate(false),
        vec![Problem::Cycle(Cycle {
            path: vec![2, 3, 2]
        })]
    );
    // Two components, reported by smallest id; a path that enters at a larger id.
    let g = from_edges(6, &[(5, 3), (3, 4), (4, 5), (2, 1), (1, 2)]);
    assert_eq!(
        g.validate(false),
        vec![
            Problem::Cycle(Cycle {
                path: vec![1, 2, 1]
            }),
            Problem::Cycle(Cycle {
                path: vec![3, 4, 5, 3]
            }),
        ]
    );
    assert_eq!(
        g.topological_order(),
        Err(Cycle {
            path: vec![1, 2, 1]
        })
    );
    assert_eq!(
        g.levels(),
        Err(Cycle {
            path: vec![1, 2, 1]
        })
    );
    assert_eq!(
        g.find_cycle(),
        Some(Cycle {
            path: vec![1, 2, 1]
        })
    );
}

#[test]
fn disconnected_graphs_are_valid() {
    let g = from_edges(5, &[(0, 1), (3, 4)]);
    assert!(g.validate(true).is_empty());
    assert_eq!(g.roots(), vec![0, 2, 3]);
    assert_eq!(g.leaves(), vec![1, 2, 4]);
    assert_eq!(g.find_cycle(), None);
}

#[test]
fn display_texts() {
    let cycle = Cycle {
        path: vec![1, 2, 1],
    };
    assert_eq!(cycle.to_string(), "cycle: 1 -> 2 -> 1");
    assert_eq!(
        Problem::BadEdge { from: 3, to: 9 }.to_string(),
        "edge 3 -> 9 refers to a node that does not exist"
    );
    assert_eq!(
        Problem::DuplicateOutput {
            key: 4,
            first: 0,
            second: 2
        }
        .to_string(),
        "key 4 is produced by node 0 and again by node 2"
    );
    assert_eq!(
        Problem::MissingInput { node: 5, key: 7 }.to_string(),
        "node 5 needs key 7, which no node produces and is not declared external"
    );
    assert_eq!(
        Problem::Cycle(cycle.clone()).to_string(),
        "cycle: 1 -> 2 -> 1"
    );
    assert_eq!(GraphError::Cycle(cycle).to_string(), "cycle: 1 -> 2 -> 1");
    assert_eq!(
        GraphError::WeightsLength {
            expected: 4,
            got: 3
        }
        .to_string(),
        "weights has 3 entries but the graph has 4 nodes"
    );
    assert_eq!(
        GraphError::NodeOutOfRange(8).to_string(),
        "node 8 does not exist"
    );
}

#[test]
fn graph_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<dataflow_core::Graph>();
    check::<dataflow_core::Scheduler>();
}

#[test]
fn key_queries_by_name() {
    let g = from_keys(&[
        (&["ext", "b"], &["x", "x", "y"]),
        (&["x", "ext"], &["x", "z"]),
        (&[], &["w"]),
    ]);
    let names = |keys: Vec<u32>| keys.iter().map(|&k| g.key_name(k)).collect::<Vec<_>>();
    // Each key once, by producer: node 0 lists "x" twice, node 1 is an extra producer of it.
    assert_eq!(names(g.output_keys()), ["x", "y", "z", "w"]);
    assert_eq!(names(g.unproduced_inputs()), ["ext", "b"]);
    assert_eq!(g.producer_of("x"), Some(0));
    assert_eq!(g.producer_of("ext"), None);
    assert_eq!(g.producer_of("unknown"), None);
    assert_eq!(g.consumers_of("ext"), &[0, 1]);
    assert!(g.consumers_of("unknown").is_empty());
    assert!(g.has_edge(0, 1) && !g.has_edge(1, 0) && !g.has_edge(0, 9) && !g.has_edge(9, 0));
}

#[test]
fn from_edges_keeps_out_of_range_edges_for_validate() {
    let g = dataflow_core::Graph::from_edges(3, &[(0, 1), (1, 2), (2, 7)]);
    assert_eq!(g.edges().collect::<Vec<_>>(), [(0, 1), (1, 2)]);
    assert_eq!(g.validate(false), [Problem::BadEdge { from: 2, to: 7 }]);
}
