//! The ready-set scheduler's state machine.

mod common;

use std::sync::Arc;

use common::from_edges;
use dataflow_core::{Counts, Cycle, NodeState, SchedError, Scheduler};

use NodeState::*;

/// 0 -> {1, 2} -> 3, and 4 alone.
fn diamond() -> Arc<dataflow_core::Graph> {
    Arc::new(from_edges(5, &[(0, 1), (0, 2), (1, 3), (2, 3)]))
}

fn states(s: &Scheduler) -> Vec<NodeState> {
    (0..s.graph().node_count() as u32)
        .map(|v| s.state(v).unwrap())
        .collect()
}

#[test]
fn full_run_without_limits() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    assert!(!s.is_started());
    assert_eq!(
        s.counts(),
        Counts {
            pending: 5,
            ..Counts::default()
        }
    );
    assert!(!s.is_finished());
    assert_eq!(s.start().unwrap(), vec![0, 4]);
    assert!(s.is_started());
    assert_eq!(
        s.counts(),
        Counts {
            pending: 3,
            running: 2,
            ..Counts::default()
        }
    );
    assert_eq!(s.complete(4).unwrap(), vec![]);
    assert_eq!(s.complete(0).unwrap(), vec![1, 2]);
    assert_eq!(s.complete(2).unwrap(), vec![]);
    assert_eq!(s.state(3).unwrap(), Pending);
    assert_eq!(s.complete(1).unwrap(), vec![3]);
    assert!(!s.is_finished());
    assert_eq!(s.complete(3).unwrap(), vec![]);
    assert!(s.is_finished());
    assert_eq!(
        s.counts(),
        Counts {
            done: 5,
            ..Counts::default()
        }
    );
}

#[test]
fn complete_errors_leave_state_unchanged() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    assert_eq!(s.complete(0), Err(SchedError::NotStarted));
    s.start().unwrap();
    let before = (states(&s), s.counts());
    assert_eq!(s.complete(9), Err(SchedError::OutOfRange(9)));
    assert_eq!(
        s.complete(1),
        Err(SchedError::NotRunning {
            node: 1,
            state: Pending
        })
    );
    assert_eq!((states(&s), s.counts()), before);
    s.complete(0).unwrap();
    // Completing twice.
    assert_eq!(
        s.complete(0),
        Err(SchedError::NotRunning {
            node: 0,
            state: Done
        })
    );
    assert_eq!(s.state(0).unwrap(), Done);
}

#[test]
fn start_twice_and_mark_done_after_start() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    s.start().unwrap();
    assert_eq!(s.start(), Err(SchedError::AlreadyStarted));
    assert_eq!(s.mark_done(&[0]), Err(SchedError::AlreadyStarted));
}

#[test]
fn not_started_errors() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    assert_eq!(s.complete_many(&[0]), Err(SchedError::NotStarted));
    assert_eq!(s.fail(0), Err(SchedError::NotStarted));
    assert_eq!(s.requeue(0), Err(SchedError::NotStarted));
    assert_eq!(s.take_ready(), vec![]);
    assert_eq!(s.state(5), Err(SchedError::OutOfRange(5)));
}

#[test]
fn fail_skips_descendants() {
    let g = Arc::new(from_edges(6, &[(0, 1), (1, 2), (0, 3), (4, 2), (5, 3)]));
    let mut s = Scheduler::new(g, None, None).unwrap();
    assert_eq!(s.start().unwrap(), vec![0, 4, 5]);
    assert_eq!(s.complete(0).unwrap(), vec![1]);
    assert_eq!(s.fail(1).unwrap(), vec![2]);
    assert_eq!(
        s.fail(1),
        Err(SchedError::NotRunning {
            node: 1,
            state: Failed
        })
    );
    assert_eq!(s.complete(4).unwrap(), vec![]);
    assert_eq!(s.complete(5).unwrap(), vec![3]);
    assert_eq!(s.complete(3).unwrap(), vec![]);
    assert_eq!(states(&s), vec![Done, Failed, Skipped, Done, Done, Done]);
    assert_eq!(
        s.counts(),
        Counts {
            done: 4,
            failed: 1,
            skipped: 1,
            ..Counts::default()
        }
    );
    assert!(s.is_finished());
    assert_eq!(
        s.complete(2),
        Err(SchedError::NotRunning {
            node: 2,
            state: Skipped
        })
    );
}

#[test]
fn fail_skips_ready_nodes_and_frees_capacity() {
    // 0 -> 2, 0 -> 3 -> 4; 1 alone. Capacity 1.
    let g = Arc::new(from_edges(5, &[(0, 2), (0, 3), (3, 4)]));
    let mut s = Scheduler::new(g, None, Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    assert_eq!(s.state(1).unwrap(), Ready);
    assert_eq!(s.complete(0).unwrap(), vec![1]);
    assert_eq!(s.counts().ready, 2);
    assert_eq!(s.fail(1).unwrap(), vec![]);
    assert_eq!(s.take_ready(), vec![2]);
    assert_eq!(s.fail(2).unwrap(), vec![]);
    assert_eq!(s.take_ready(), vec![3]);
    assert_eq!(s.fail(3).unwrap(), vec![4]);
    assert_eq!(s.take_ready(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn failure_spreads_through_the_whole_subgraph() {
    // 0 -> 1 -> 2 -> 3, 0 -> 4, 5 -> 3
    let g = Arc::new(from_edges(6, &[(0, 1), (1, 2), (2, 3), (0, 4), (5, 3)]));
    let mut s = Scheduler::new(g, None, None).unwrap();
    s.start().unwrap();
    assert_eq!(s.fail(0).unwrap(), vec![1, 2, 3, 4]);
    assert_eq!(
        s.counts(),
        Counts {
            running: 1,
            failed: 1,
            skipped: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.complete(5).unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn capacity_and_priorities_order_hand_outs() {
    let g = Arc::new(from_edges(6, &[]));
    let prio = vec![1.0, 5.0, 3.0, 5.0, f64::NAN, -2.0];
    let mut s = Scheduler::new(g, Some(prio), Some(2)).unwrap();
    assert_eq!(s.capacity(), Some(2));
    // Highest first, ties by smaller id.
    assert_eq!(s.start().unwrap(), vec![1, 3]);
    assert_eq!(
        s.counts(),
        Counts {
            ready: 4,
            running: 2,
            ..Counts::default()
        }
    );
    assert_eq!(s.complete_many(&[1, 3]).unwrap(), vec![2, 0]);
    assert_eq!(s.complete(2).unwrap(), vec![5]);
    // NaN is the lowest priority.
    assert_eq!(s.complete(0).unwrap(), vec![4]);
}

#[test]
fn without_priorities_ready_nodes_go_by_ascending_id() {
    let g = Arc::new(from_edges(6, &[(5, 0), (5, 1), (4, 2)]));
    let mut s = Scheduler::new(g, None, Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![3]);
    assert_eq!(s.complete(3).unwrap(), vec![4]);
    assert_eq!(s.complete(4).unwrap(), vec![2]);
    assert_eq!(s.complete(2).unwrap(), vec![5]);
    assert_eq!(s.complete(5).unwrap(), vec![0]);
    assert_eq!(s.complete(0).unwrap(), vec![1]);
}

#[test]
fn set_capacity_and_take_ready() {
    let g = Arc::new(from_edges(4, &[]));
    let mut s = Scheduler::new(g, None, Some(0)).unwrap();
    assert_eq!(s.start().unwrap(), vec![]);
    assert_eq!(s.counts().ready, 4);
    s.set_capacity(Some(1));
    assert_eq!(s.take_ready(), vec![0]);
    assert_eq!(s.take_ready(), vec![]);
    s.set_capacity(None);
    assert_eq!(s.take_ready(), vec![1, 2, 3]);
    s.set_capacity(Some(1));
    // Over capacity: completing one hands out nothing until running drops below it.
    assert_eq!(s.complete(0).unwrap(), vec![]);
    assert_eq!(s.capacity(), Some(1));
}

#[test]
fn requeue_puts_a_running_node_back() {
    let mut s = Scheduler::new(diamond(), None, Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    s.requeue(0).unwrap();
    assert_eq!(s.state(0).unwrap(), Ready);
    assert_eq!(
        s.counts(),
        Counts {
            pending: 3,
            ready: 2,
            ..Counts::default()
        }
    );
    assert_eq!(
        s.requeue(0),
        Err(SchedError::NotRunning {
            node: 0,
            state: Ready
        })
    );
    assert_eq!(s.requeue(7), Err(SchedError::OutOfRange(7)));
    assert_eq!(s.take_ready(), vec![0]);
    assert_eq!(s.complete(0).unwrap(), vec![1]);
    s.requeue(1).unwrap();
    // 1 and 2 are both ready again; the smaller id goes first.
    assert_eq!(s.take_ready(), vec![1]);
}

#[test]
fn cancel_skips_everything_not_running() {
    let mut s = Scheduler::new(diamond(), None, Some(1)).unwrap();
    assert_eq!(s.start().unwrap(), vec![0]);
    assert_eq!(s.cancel(), vec![1, 2, 3, 4]);
    assert_eq!(s.state(0).unwrap(), Running);
    assert!(!s.is_finished());
    assert_eq!(s.take_ready(), vec![]);
    assert_eq!(s.complete(0).unwrap(), vec![]);
    assert!(s.is_finished());
    assert_eq!(
        s.counts(),
        Counts {
            done: 1,
            skipped: 4,
            ..Counts::default()
        }
    );
    assert_eq!(s.cancel(), vec![]);
}

#[test]
fn mark_done_restarts_from_stored_results() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    assert_eq!(s.mark_done(&[0, 9]), Err(SchedError::OutOfRange(9)));
    assert_eq!(s.counts().done, 0);
    s.mark_done(&[0, 1, 0]).unwrap();
    assert_eq!(
        s.counts(),
        Counts {
            pending: 3,
            done: 2,
            ..Counts::default()
        }
    );
    assert_eq!(s.start().unwrap(), vec![2, 4]);
    assert_eq!(s.complete(2).unwrap(), vec![3]);
    assert_eq!(s.complete_many(&[3, 4]).unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn fail_stops_at_nodes_marked_done() {
    // 0 -> 1 -> 2 with 1 already done: 2 does not need 0.
    let g = Arc::new(from_edges(3, &[(0, 1), (1, 2)]));
    let mut s = Scheduler::new(g, None, None).unwrap();
    s.mark_done(&[1]).unwrap();
    assert_eq!(s.start().unwrap(), vec![0, 2]);
    assert_eq!(s.fail(0).unwrap(), vec![]);
    assert_eq!(s.state(2).unwrap(), Running);
}

#[test]
fn complete_many_is_all_or_nothing() {
    let g = Arc::new(from_edges(5, &[(0, 4), (1, 4), (2, 4)]));
    let mut s = Scheduler::new(g, None, None).unwrap();
    assert_eq!(s.start().unwrap(), vec![0, 1, 2, 3]);
    let before = (states(&s), s.counts());
    assert_eq!(
        s.complete_many(&[0, 1, 0]),
        Err(SchedError::DuplicateInBatch(0))
    );
    assert_eq!((states(&s), s.counts()), before);
    assert_eq!(s.complete_many(&[0, 9]), Err(SchedError::OutOfRange(9)));
    assert_eq!(
        s.complete_many(&[0, 4]),
        Err(SchedError::NotRunning {
            node: 4,
            state: Pending
        })
    );
    assert_eq!((states(&s), s.counts()), before);
    assert_eq!(s.complete_many(&[]).unwrap(), vec![]);
    assert_eq!(s.complete_many(&[2, 1, 0]).unwrap(), vec![4]);
    assert_eq!(
        s.complete_many(&[3, 3]),
        Err(SchedError::DuplicateInBatch(3))
    );
    assert_eq!(s.state(3).unwrap(), Running);
    assert_eq!(s.complete_many(&[4, 3]).unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn constructor_errors() {
    let cyclic = Arc::new(from_edges(3, &[(0, 1), (1, 2), (2, 1)]));
    assert_eq!(
        Scheduler::new(cyclic, None, None).err(),
        Some(SchedError::Cycle(Cycle {
            path: vec![1, 2, 1]
        }))
    );
    assert_eq!(
        Scheduler::new(diamond(), Some(vec![1.0; 4]), None).err(),
        Some(SchedError::PrioritiesLength {
            expected: 5,
            got: 4
        })
    );
}

#[test]
fn empty_graph_is_finished() {
    let mut s = Scheduler::new(Arc::new(from_edges(0, &[])), None, None).unwrap();
    assert!(s.is_finished());
    assert_eq!(s.start().unwrap(), vec![]);
    assert!(s.is_finished());
}

#[test]
fn display_texts() {
    assert_eq!(
        SchedError::OutOfRange(7).to_string(),
        "node 7 does not exist"
    );
    assert_eq!(
        SchedError::NotRunning {
            node: 3,
            state: Done
        }
        .to_string(),
        "node 3 is not running (it is done)"
    );
    assert_eq!(
        SchedError::AlreadyStarted.to_string(),
        "the scheduler has already started"
    );
    assert_eq!(
        SchedError::NotStarted.to_string(),
        "the scheduler has not started yet"
    );
    assert_eq!(
        SchedError::DuplicateInBatch(2).to_string(),
        "node 2 appears more than once in the batch"
    );
    assert_eq!(
        SchedError::Cycle(Cycle { path: vec![0, 0] }).to_string(),
        "cycle: 0 -> 0"
    );
    assert_eq!(
        SchedError::PrioritiesLength {
            expected: 5,
            got: 4
        }
        .to_string(),
        "priorities has 4 entries but the graph has 5 nodes"
    );
    let names: Vec<String> = [Pending, Ready, Running, Done, Failed, Skipped]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(
        names,
        ["pending", "ready", "running", "done", "failed", "skipped"]
    );
}

#[test]
fn errors_name_their_node() {
    let cases = [
        (SchedError::OutOfRange(7), Some(7)),
        (
            SchedError::NotRunning {
                node: 3,
                state: Done,
            },
            Some(3),
        ),
        (SchedError::DuplicateInBatch(2), Some(2)),
        (SchedError::AlreadyStarted, None),
        (SchedError::NotStarted, None),
        (SchedError::Cycle(Cycle { path: vec![0, 0] }), None),
        (
            SchedError::PrioritiesLength {
                expected: 5,
                got: 4,
            },
            None,
        ),
    ];
    for (err, node) in cases {
        assert_eq!(err.node(), node, "{err}");
    }
}

#[test]
fn counts_by_state_follow_the_states() {
    let mut s = Scheduler::new(diamond(), None, Some(1)).unwrap();
    s.start().unwrap();
    let counts = s.counts();
    assert_eq!(
        counts.by_state(),
        [
            (Pending, 3),
            (Ready, 1),
            (Running, 1),
            (Done, 0),
            (Failed, 0),
            (Skipped, 0)
        ]
    );
    assert_eq!(
        NodeState::ALL.map(|state| counts.get(state)),
        [3, 1, 1, 0, 0, 0]
    );
    assert_eq!(Counts::default().by_state().map(|(_, n)| n), [0; 6]);
}

#[test]
fn counts_by_label_follow_the_states() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    assert!(s.counts_by_label().is_empty());
    // a gap after the labelled nodes, or past the last node, is refused
    assert_eq!(s.set_labels(1, &[0]), Err(SchedError::OutOfRange(1)));
    s.set_labels(0, &[0]).unwrap();
    assert_eq!(s.set_labels(2, &[0]), Err(SchedError::OutOfRange(2)));
    assert_eq!(s.set_labels(0, &[0; 6]), Err(SchedError::OutOfRange(5)));
    s.set_labels(0, &[0, 1, 1]).unwrap();
    assert_eq!(s.labelled(), 3);
    s.set_labels(3, &[2, 0]).unwrap();
    assert_eq!(s.start().unwrap(), vec![0, 4]);
    assert_eq!(
        s.counts_by_label(),
        vec![[0, 0, 2, 0, 0, 0], [2, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
    );
    s.complete(0).unwrap();
    s.fail(1).unwrap();
    assert_eq!(
        s.counts_by_label(),
        vec![[0, 0, 1, 1, 0, 0], [0, 0, 1, 0, 1, 0], [0, 0, 0, 0, 0, 1]]
    );
    // relabelling moves a node's count
    s.set_labels(4, &[2]).unwrap();
    assert_eq!(s.counts_by_label()[2], [0, 0, 1, 0, 0, 1]);
}

#[test]
fn counts_by_label_leave_added_nodes_out_until_labelled() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    s.set_labels(0, &[0; 5]).unwrap();
    s.start().unwrap();
    let added = s.add_nodes(&["new"], &[(0, 1)]).unwrap();
    assert_eq!(added.first, 5);
    assert_eq!(s.counts_by_label().iter().flatten().sum::<usize>(), 5);
    s.set_labels(5, &[3]).unwrap();
    assert_eq!(s.counts_by_label()[3], [0, 0, 1, 0, 0, 0]);
}

#[test]
fn edge_counts_by_label_collapse_the_graph() {
    let mut s = Scheduler::new(diamond(), None, None).unwrap();
    // 0 -> {1, 2} -> 3 with 1 and 2 under one label; 4 alone
    s.set_labels(0, &[0, 1, 1, 2, 3]).unwrap();
    assert_eq!(s.edge_counts_by_label(), vec![(0, 1, 2), (1, 2, 2)]);
    s.start().unwrap();
    // two added nodes, the second reading the first one's key
    let added = s.add_nodes(&["x", "x", "z"], &[(0, 1), (1, 1)]).unwrap();
    assert_eq!(added.first, 5);
    s.set_labels(5, &[4, 4]).unwrap();
    assert_eq!(
        s.edge_counts_by_label(),
        vec![(0, 1, 2), (1, 2, 2), (4, 4, 1)]
    );
}
