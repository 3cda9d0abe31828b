//! The ready-set scheduler: hands out nodes whose predecessors are done, up to a
//! capacity, highest priority first, and tracks each node's state.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashMap as HashMap;

use crate::error::Cycle;
use crate::graph::{Graph, NONE};
use crate::grow::{Added, GrowError, Growth};
use crate::ready_queue::ReadyQueue;
use crate::NodeId;

/// A group of added nodes with its own capacity (`Scheduler::new_group`).
pub type GroupId = u32;

/// How `Scheduler::add_nodes_with` places a batch.
#[derive(Debug, Clone, Copy, Default)]
pub struct AddOptions<'a> {
    /// One per node of the batch, higher first among ready nodes. None: priority 0.
    /// A scheduler made without priorities switches to priorities (every existing
    /// node at 0, which keeps their id order).
    pub priorities: Option<&'a [f64]>,
    /// Every node of the batch joins this group.
    pub group: Option<GroupId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NodeState {
    /// Waiting for predecessors.
    Pending,
    /// Queued, waiting for capacity.
    Ready,
    /// Handed out by `start`, `complete`, `complete_many` or `take_ready`.
    Running,
    Done,
    Failed,
    /// Will not run: it depends on a failed node, or the run was cancelled.
    Skipped,
}

impl NodeState {
    /// Every state, in declaration order (the order of `Counts::by_state`).
    pub const ALL: [NodeState; 6] = [
        NodeState::Pending,
        NodeState::Ready,
        NodeState::Running,
        NodeState::Done,
        NodeState::Failed,
        NodeState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Ready => "ready",
            NodeState::Running => "running",
            NodeState::Done => "done",
            NodeState::Failed => "failed",
            NodeState::Skipped => "skipped",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many nodes are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Counts {
    pub pending: usize,
    pub ready: usize,
    pub running: usize,
    pub done: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl Counts {
    pub fn get(&self, state: NodeState) -> usize {
        match state {
            NodeState::Pending => self.pending,
            NodeState::Ready => self.ready,
            NodeState::Running => self.running,
            NodeState::Done => self.done,
            NodeState::Failed => self.failed,
            NodeState::Skipped => self.skipped,
        }
    }

    /// Each state with its count, in the order of `NodeState::ALL`.
    pub fn by_state(&self) -> [(NodeState, usize); 6] {
        NodeState::ALL.map(|state| (state, self.get(state)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SchedError {
    OutOfRange(NodeId),
    NotRunning {
        node: NodeId,
        state: NodeState,
    },
    AlreadyStarted,
    NotStarted,
    DuplicateInBatch(NodeId),
    Cycle(Cycle),
    PrioritiesLength {
        expected: usize,
        got: usize,
    },
    /// `defer` to a node that has finished (or will not run).
    DeferTo {
        to: NodeId,
        state: NodeState,
    },
    /// `defer` of a node to itself.
    DeferToSelf(NodeId),
    /// `new_group` with capacity 0: its nodes could never run.
    GroupCapacity,
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::OutOfRange(node) => write!(f, "node {node} does not exist"),
            SchedError::NotRunning { node, state } => {
                write!(f, "node {node} is not running (it is {state})")
            }
            SchedError::AlreadyStarted => f.write_str("the scheduler has already started"),
            SchedError::NotStarted => f.write_str("the scheduler has not started yet"),
            SchedError::DuplicateInBatch(node) => {
                write!(f, "node {node} appears more than once in the batch")
            }
            SchedError::Cycle(c) => c.fmt(f),
            SchedError::PrioritiesLength { expected, got } => write!(
                f,
                "priorities has {got} entries but the graph has {expected} nodes"
            ),
            SchedError::DeferTo { to, state } => {
                write!(f, "cannot defer to node {to}: it is {state}")
            }
            SchedError::DeferToSelf(node) => write!(f, "node {node} cannot defer to itself"),
            SchedError::GroupCapacity => f.write_str("a group needs a capacity of at least 1"),
        }
    }
}

impl SchedError {
    /// The node the error is about, for errors about one node.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            SchedError::OutOfRange(node)
            | SchedError::DuplicateInBatch(node)
            | SchedError::DeferToSelf(node)
            | SchedError::DeferTo { to: node, .. }
            | SchedError::NotRunning { node, .. } => Some(*node),
            SchedError::AlreadyStarted
            | SchedError::NotStarted
            | SchedError::Cycle(_)
            | SchedError::PrioritiesLength { .. }
            | SchedError::GroupCapacity => None,
        }
    }
}

impl std::error::Error for SchedError {}

impl From<Cycle> for SchedError {
    fn from(c: Cycle) -> Self {
        SchedError::Cycle(c)
    }
}

/// Ready-set scheduler over a shared acyclic graph.
///
/// Among ready nodes the highest priority runs first, ties (and every node when no
/// priorities are given) in ascending id order. Nodes are handed out only up to the
/// capacity (the number of Running nodes); the rest wait as Ready.
/// Each node's state with the number of nodes in each state, kept in step.
#[derive(Debug, Clone)]
struct States {
    of: Vec<NodeState>,
    /// Indexed by `NodeState as usize`.
    counts: [usize; 6],
}

impl States {
    #[inline]
    fn set(&mut self, node: NodeId, to: NodeState) {
        let from = std::mem::replace(&mut self.of[node as usize], to);
        self.counts[from as usize] -= 1;
        self.counts[to as usize] += 1;
    }
}

/// Nodes of one group Running now, and its Ready nodes that found it full, best first.
#[derive(Debug, Clone)]
struct Group {
    capacity: usize,
    running: usize,
    /// (priority key, node), like `ReadyQueue`. May hold stale entries (cancelled).
    held: BinaryHeap<(u64, Reverse<NodeId>)>,
}

#[derive(Debug, Clone)]
pub struct Scheduler {
    graph: Arc<Graph>,
    states: States,
    /// Predecessors not yet Done, per node.
    waiting: Vec<u32>,
    /// May hold stale entries of nodes skipped while queued; they are dropped on pop.
    queue: ReadyQueue,
    capacity: Option<usize>,
    started: bool,
    /// Nodes added by `add_nodes`, ids after the graph's.
    growth: Growth,
    /// Empty in runs without groups, which then never look at `group_of`.
    groups: Vec<Group>,
    /// The group of each added node (row `v - graph nodes`), `NONE` for none; shorter
    /// than the added nodes when the last ones were added before any group existed.
    group_of: Vec<GroupId>,
    /// A caller's label per node (`set_labels`, e.g. a task name's index) for
    /// `counts_by_label`; empty unless asked for, and shorter than the nodes when the
    /// last ones (added since) have none yet.
    labels: Vec<u32>,
}

impl Scheduler {
    /// `priorities`: higher runs first among ready nodes; None runs ready nodes in
    /// ascending id order. `capacity`: most nodes Running at once (None: unlimited;
    /// Some(0) hands nothing out until `set_capacity`).
    pub fn new(
        graph: Arc<Graph>,
        priorities: Option<Vec<f64>>,
        capacity: Option<usize>,
    ) -> Result<Self, SchedError> {
        let n = graph.node_count();
        if let Some(p) = &priorities {
            if p.len() != n {
                return Err(SchedError::PrioritiesLength {
                    expected: n,
                    got: p.len(),
                });
            }
        }
        // A cycle would leave its nodes pending forever.
        if let Some(cycle) = graph.find_cycle() {
            return Err(SchedError::Cycle(cycle));
        }
        let waiting = graph.predecessors.degrees();
        Ok(Scheduler {
            states: States {
                of: vec![NodeState::Pending; n],
                counts: [n, 0, 0, 0, 0, 0],
            },
            waiting,
            queue: ReadyQueue::new(priorities),
            capacity,
            started: false,
            growth: Growth::default(),
            groups: Vec::new(),
            group_of: Vec::new(),
            labels: Vec::new(),
            graph,
        })
    }

    pub fn graph(&self) -> &Arc<Graph> {
        &self.graph
    }

    pub fn is_started(&self) -> bool {
        self.started
    }

    pub fn capacity(&self) -> Option<usize> {
        self.capacity
    }

    #[inline]
    fn running(&self) -> usize {
        self.states.counts[NodeState::Running as usize]
    }

    fn check_range(&self, node: NodeId) -> Result<(), SchedError> {
        if (node as usize) < self.states.of.len() {
            Ok(())
        } else {
            Err(SchedError::OutOfRange(node))
        }
    }

    fn check_running(&self, node: NodeId) -> Result<(), SchedError> {
        self.check_range(node)?;
        match self.states.of[node as usize] {
            NodeState::Running => Ok(()),
            state => Err(SchedError::NotRunning { node, state }),
        }
    }

    /// `node` is Done: successors whose last missing predecessor it was become Ready
    /// and are appended to `fresh`.
    #[inline]
    fn release_successors(&mut self, node: NodeId, fresh: &mut Vec<NodeId>) {
        for &s in self.graph.successors(node) {
            release(&mut self.waiting, &mut self.states, s, fresh);
        }
        for s in self.growth.successors(node) {
            release(&mut self.waiting, &mut self.states, s, fresh);
        }
    }

    /// Turns `out`, on entry the nodes that just became Ready, into the nodes handed
    /// out now (Running), best first.
    fn hand_out(&mut self, out: &mut Vec<NodeId>) {
        if !self.groups.is_empty() {
            return self.hand_out_grouped(out);
        }
        let free = self
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(self.running()));
        // The common case (nothing queued, room for everything new) needs no heap.
        if self.queue.is_empty() && out.len() <= free {
            self.queue.sort(out);
        } else {
            self.queue.extend(out.drain(..));
            while out.len() < free {
                let Some(node) = self.queue.pop() else {
                    break;
                };
                // Skip entries of nodes skipped while they waited.
                if self.states.of[node as usize] == NodeState::Ready {
                    out.push(node);
                }
            }
        }
        for &node in out.iter() {
            self.states.set(node, NodeState::Running);
        }
    }

    /// `hand_out` when groups exist: a node whose group is full is held by the group
    /// (still Ready) until one of the group's nodes stops running (`leave_group`).
    fn hand_out_grouped(&mut self, out: &mut Vec<NodeId>) {
        let free = self
            .capacity
            .map_or(usize::MAX, |c| c.saturating_sub(self.running()));
        self.queue.extend(out.drain(..));
        while out.len() < free {
            let Some(node) = self.queue.pop() else {
                break;
            };
            if self.states.of[node as usize] != NodeState::Ready {
                continue;
            }
            if let Some(g) = self.group_index(node) {
                let group = &mut self.groups[g];
                if group.running >= group.capacity {
                    group.held.push((self.queue.key(node), Reverse(node)));
                    continue;
                }
                group.running += 1;
            }
            out.push(node);
        }
        for &node in out.iter() {
            self.states.set(node, NodeState::Running);
        }
    }

    #[inline]
    fn group_index(&self, node: NodeId) -> Option<usize> {
        let added = (node as usize).checked_sub(self.graph.node_count())?;
        match self.group_of.get(added) {
            Some(&g) if g != NONE => Some(g as usize),
            _ => None,
        }
    }

    /// `node` stopped running: its group's slot goes to the group's best held node,
    /// which goes back to the ready queue (so it competes there by priority).
    #[inline]
    fn leave_group(&mut self, node: NodeId) {
        if self.groups.is_empty() {
            return;
        }
        let Some(g) = self.group_index(node) else {
            return;
        };
        let group = &mut self.groups[g];
        group.running -= 1;
        while let Some((_, Reverse(v))) = group.held.pop() {
            if self.states.of[v as usize] == NodeState::Ready {
                self.queue.push(v);
                break;
            }
        }
    }

    /// A group whose nodes have at most `capacity` Running at once, within the
    /// scheduler's own capacity. Nodes join it through `add_nodes_with`.
    pub fn new_group(&mut self, capacity: usize) -> Result<GroupId, SchedError> {
        if capacity == 0 {
            return Err(SchedError::GroupCapacity);
        }
        let id = GroupId::try_from(self.groups.len())
            .ok()
            .filter(|&g| g != NONE)
            .expect("more than u32::MAX - 1 groups");
        self.groups.push(Group {
            capacity,
            running: 0,
            held: BinaryHeap::new(),
        });
        Ok(id)
    }

    /// Before `start`: marks nodes as already Done (restarting from stored results);
    /// their successors can become ready at `start`. Nodes already Done are ignored.
    /// An id out of range fails the whole call without changing anything.
    pub fn mark_done(&mut self, nodes: &[NodeId]) -> Result<(), SchedError> {
        if self.started {
            return Err(SchedError::AlreadyStarted);
        }
        nodes.iter().try_for_each(|&v| self.check_range(v))?;
        for &v in nodes {
            if self.states.of[v as usize] == NodeState::Pending {
                self.states.set(v, NodeState::Done);
                self.release_successors_before_start(v);
            }
        }
        Ok(())
    }

    /// Like `release_successors`, but readiness is decided at `start`.
    fn release_successors_before_start(&mut self, node: NodeId) {
        for &s in self.graph.successors(node) {
            self.waiting[s as usize] -= 1;
        }
        for s in self.growth.successors(node) {
            self.waiting[s as usize] -= 1;
        }
    }

    /// Nodes whose predecessors are all Done become Ready; up to capacity of them
    /// become Running and are returned, highest priority first.
    pub fn start(&mut self) -> Result<Vec<NodeId>, SchedError> {
        if self.started {
            return Err(SchedError::AlreadyStarted);
        }
        self.started = true;
        let mut out = Vec::new();
        for v in 0..self.states.of.len() as NodeId {
            if self.states.of[v as usize] == NodeState::Pending && self.waiting[v as usize] == 0 {
                self.states.set(v, NodeState::Ready);
                out.push(v);
            }
        }
        self.hand_out(&mut out);
        Ok(out)
    }

    /// Running -> Done. Returns the nodes handed out now: newly ready ones, and queued
    /// ones when capacity frees up, highest priority first. On error nothing changes.
    pub fn complete(&mut self, node: NodeId) -> Result<Vec<NodeId>, SchedError> {
        if !self.started {
            return Err(SchedError::NotStarted);
        }
        self.check_running(node)?;
        self.states.set(node, NodeState::Done);
        self.leave_group(node);
        let mut out = Vec::new();
        self.release_successors(node, &mut out);
        self.hand_out(&mut out);
        Ok(out)
    }

    /// `complete` for a batch. The whole batch is checked first (range, Running, no
    /// repeats), so an error changes nothing.
    pub fn complete_many(&mut self, nodes: &[NodeId]) -> Result<Vec<NodeId>, SchedError> {
        if !self.started {
            return Err(SchedError::NotStarted);
        }
        nodes.iter().try_for_each(|&v| self.check_running(v))?;
        // Every node is Running, so one already Done here is a repeat within the batch;
        // using the state as the "seen" mark avoids allocating a set.
        for (i, &v) in nodes.iter().enumerate() {
            if self.states.of[v as usize] == NodeState::Done {
                for &u in &nodes[..i] {
                    self.states.set(u, NodeState::Running);
                }
                return Err(SchedError::DuplicateInBatch(v));
            }
            self.states.set(v, NodeState::Done);
        }
        if !self.groups.is_empty() {
            for &v in nodes {
                self.leave_group(v);
            }
        }
        let mut out = Vec::new();
        for &v in nodes {
            self.release_successors(v, &mut out);
        }
        self.hand_out(&mut out);
        Ok(out)
    }

    /// Running -> Failed; every node depending on it, directly or through other
    /// Pending/Ready nodes, becomes Skipped. Returns the skipped ids ascending. The
    /// freed capacity is not used: call `take_ready` next.
    ///
    /// A Done node (from `mark_done`) already holds its outputs, so the search does
    /// not go past it; without `mark_done` this is every descendant of `node`.
    pub fn fail(&mut self, node: NodeId) -> Result<Vec<NodeId>, SchedError> {
        if !self.started {
            return Err(SchedError::NotStarted);
        }
        self.check_running(node)?;
        self.states.set(node, NodeState::Failed);
        self.leave_group(node);
        // The result doubles as the search queue.
        let mut skipped: Vec<NodeId> = Vec::new();
        let mut head = 0;
        let mut u = node;
        loop {
            let base = self.graph.successors(u).iter().copied();
            for s in base.chain(self.growth.successors(u)) {
                if matches!(
                    self.states.of[s as usize],
                    NodeState::Pending | NodeState::Ready
                ) {
                    self.states.set(s, NodeState::Skipped);
                    skipped.push(s);
                }
            }
            if head == skipped.len() {
                break;
            }
            u = skipped[head];
            head += 1;
        }
        skipped.sort_unstable();
        Ok(skipped)
    }

    /// Hands out queued Ready nodes up to capacity (after `fail`, `requeue` or
    /// `set_capacity`). Empty before `start`.
    pub fn take_ready(&mut self) -> Vec<NodeId> {
        let mut out = Vec::new();
        if self.started {
            self.hand_out(&mut out);
        }
        out
    }

    /// Takes effect at the next hand-out; call `take_ready` to use a larger capacity.
    pub fn set_capacity(&mut self, capacity: Option<usize>) {
        self.capacity = capacity;
    }

    /// Running -> Ready, back in the queue (e.g. its worker died); it does not count
    /// as done. Call `take_ready` to hand it out again.
    pub fn requeue(&mut self, node: NodeId) -> Result<(), SchedError> {
        if !self.started {
            return Err(SchedError::NotStarted);
        }
        self.check_running(node)?;
        self.states.set(node, NodeState::Ready);
        self.queue.push(node);
        self.leave_group(node);
        Ok(())
    }

    /// Stops the run: every Pending or Ready node becomes Skipped; returns them
    /// ascending. Running nodes stay Running and may still complete or fail.
    pub fn cancel(&mut self) -> Vec<NodeId> {
        let mut skipped = Vec::new();
        for v in 0..self.states.of.len() as NodeId {
            if matches!(
                self.states.of[v as usize],
                NodeState::Pending | NodeState::Ready
            ) {
                self.states.set(v, NodeState::Skipped);
                skipped.push(v);
            }
        }
        self.queue.clear();
        for group in &mut self.groups {
            group.held.clear();
        }
        skipped
    }

    /// Adds a batch of nodes while the scheduler runs (or before it starts): node `j`
    /// lists `counts[j].0` input keys then `counts[j].1` output keys, taken in turn from
    /// `names`. Inputs may be keys of any node (or declared external keys); outputs must
    /// be new keys. The batch is checked whole first (see `GrowError`): on error nothing
    /// changes. Added ids follow the existing ones in batch order; a node whose inputs
    /// are all available becomes ready at once (handed out up to capacity, after
    /// `start`), one reading a key of a failed or skipped node is skipped. With
    /// priorities, added nodes have priority 0 (see `add_nodes_with`).
    pub fn add_nodes(&mut self, names: &[&str], counts: &[(u32, u32)]) -> Result<Added, GrowError> {
        self.add_nodes_with(names, counts, AddOptions::default())
    }

    /// `add_nodes` with a priority per added node and/or a group for the whole batch.
    pub fn add_nodes_with(
        &mut self,
        names: &[&str],
        counts: &[(u32, u32)],
        options: AddOptions<'_>,
    ) -> Result<Added, GrowError> {
        let base = self.states.of.len();
        let m = counts.len();
        if let Some(p) = options.priorities {
            if p.len() != m {
                return Err(GrowError::PrioritiesLength {
                    expected: m,
                    got: p.len(),
                });
            }
        }
        if let Some(g) = options.group {
            if g as usize >= self.groups.len() {
                return Err(GrowError::UnknownGroup(g));
            }
        }
        let checked = self.growth.check(&self.graph, base, names, counts)?;
        self.growth.record_outputs(base, names, counts);
        self.growth.record_preds(&checked);
        self.growth.reserve_nodes(base + m);
        self.states.of.resize(base + m, NodeState::Pending);
        self.states.counts[NodeState::Pending as usize] += m;
        self.waiting.resize(base + m, 0);
        if let Some(p) = options.priorities {
            self.queue.use_priorities(base);
            self.queue.grow(m);
            for (j, &priority) in p.iter().enumerate() {
                self.queue.set_priority((base + j) as NodeId, priority);
            }
        } else {
            self.queue.grow(m);
        }
        if !self.groups.is_empty() {
            let added = base - self.graph.node_count();
            self.group_of.resize(added, NONE);
            self.group_of
                .resize(added + m, options.group.unwrap_or(NONE));
        }
        let mut added = Added {
            first: base as NodeId,
            ..Added::default()
        };
        for &j in &checked.order {
            let v = (base + j) as NodeId;
            let start = if j == 0 { 0 } else { checked.pred_ends[j - 1] };
            let mut waiting = 0u32;
            let mut doomed = false;
            for &p in &checked.preds[start..checked.pred_ends[j]] {
                match self.states.of[p as usize] {
                    NodeState::Done => {}
                    NodeState::Failed | NodeState::Skipped => doomed = true,
                    _ => {
                        waiting += 1;
                        self.growth.add_edge(p, v);
                    }
                }
            }
            self.waiting[v as usize] = waiting;
            if doomed {
                self.states.set(v, NodeState::Skipped);
                added.skipped.push(v);
            } else if waiting == 0 && self.started {
                self.states.set(v, NodeState::Ready);
                added.ready.push(v);
            }
        }
        if self.started {
            self.hand_out(&mut added.ready);
        }
        added.skipped.sort_unstable();
        Ok(added)
    }

    /// Makes the Pending successors of the Running `node` also wait for `to` (which is
    /// Pending, Ready or Running): when `node` completes they run only once `to` is
    /// Done too, and are skipped if `to` fails or is skipped. Used by a task that adds
    /// nodes to hand its outputs' readers to one of them. May be called several times
    /// (to several nodes). Refused, changing nothing, when `to` depends on one of those
    /// successors (the edge would close a cycle: `Cycle` is `[to, successor, ..., to]`).
    ///
    /// Only nodes waiting now are affected: a node added later that reads `node`'s keys
    /// waits for `node` alone.
    pub fn defer(&mut self, node: NodeId, to: NodeId) -> Result<(), SchedError> {
        self.check_running(node)?;
        self.check_range(to)?;
        if to == node {
            return Err(SchedError::DeferToSelf(node));
        }
        match self.states.of[to as usize] {
            NodeState::Pending | NodeState::Ready | NodeState::Running => {}
            state => return Err(SchedError::DeferTo { to, state }),
        }
        let waiting: Vec<NodeId> = self
            .graph
            .successors(node)
            .iter()
            .copied()
            .chain(self.growth.successors(node))
            .filter(|&s| self.states.of[s as usize] == NodeState::Pending)
            .collect();
        if let Some(cycle) = self.defer_cycle(to, &waiting) {
            return Err(SchedError::Cycle(cycle));
        }
        let base_nodes = self.graph.node_count();
        // A run that added no nodes has no overflow adjacency yet.
        self.growth.reserve_nodes(self.states.of.len());
        for s in waiting {
            self.waiting[s as usize] += 1;
            self.growth
                .add_deferred_edge(to, s, s as usize >= base_nodes);
        }
        Ok(())
    }

    /// The cycle that edges `to -> s` for every `s` of `successors` would close.
    ///
    /// Only Pending nodes wait on others (a Ready or Running node's predecessors are all
    /// Done), so the search goes through Pending nodes alone. It walks back from `to`
    /// over added nodes' kept predecessors; in the common case (`to` an added node
    /// reading added nodes and running or done ones) that finds every node `to` waits
    /// for. Only when it meets a Pending node of the graph, whose predecessors are not
    /// kept, does a forward search from `successors` look for a way into what it met.
    fn defer_cycle(&self, to: NodeId, successors: &[NodeId]) -> Option<Cycle> {
        if successors.is_empty() {
            return None;
        }
        let base_nodes = self.graph.node_count();
        let pending = |v: NodeId| self.states.of[v as usize] == NodeState::Pending;
        // The next node on a path from each node met to `to` (`to` maps to itself).
        let mut toward: HashMap<NodeId, NodeId> = HashMap::default();
        toward.insert(to, to);
        let mut stack = vec![to];
        let mut graph_nodes_met = false;
        while let Some(v) = stack.pop() {
            if !pending(v) {
                continue;
            }
            let Some(added) = (v as usize).checked_sub(base_nodes) else {
                graph_nodes_met = true;
                continue;
            };
            for p in self.growth.predecessors(v, added as u32) {
                if self.states.of[p as usize] != NodeState::Done && !toward.contains_key(&p) {
                    toward.insert(p, v);
                    stack.push(p);
                }
            }
        }
        let close = |mut path: Vec<NodeId>| {
            let mut at = *path.last().expect("a node");
            while at != to {
                at = toward[&at];
                path.push(at);
            }
            Cycle { path }
        };
        if let Some(&s) = successors.iter().find(|s| toward.contains_key(s)) {
            return Some(close(if s == to { vec![to, to] } else { vec![to, s] }));
        }
        if !graph_nodes_met {
            return None;
        }
        // The node before each node reached, back to a successor (which maps to itself).
        let mut from: HashMap<NodeId, NodeId> = successors.iter().map(|&s| (s, s)).collect();
        let mut queue = successors.to_vec();
        let mut head = 0;
        while head < queue.len() {
            let u = queue[head];
            head += 1;
            let base = self.graph.successors(u).iter().copied();
            for v in base.chain(self.growth.successors(u)) {
                if !pending(v) || from.contains_key(&v) {
                    continue;
                }
                from.insert(v, u);
                if toward.contains_key(&v) {
                    let mut back = vec![v];
                    let mut at = v;
                    while from[&at] != at {
                        at = from[&at];
                        back.push(at);
                    }
                    back.push(to);
                    back.reverse();
                    return Some(close(back));
                }
                queue.push(v);
            }
        }
        None
    }

    pub fn state(&self, node: NodeId) -> Result<NodeState, SchedError> {
        self.check_range(node)?;
        Ok(self.states.of[node as usize])
    }

    /// O(1): maintained on every change.
    pub fn counts(&self) -> Counts {
        let [pending, ready, running, done, failed, skipped] = self.states.counts;
        Counts {
            pending,
            ready,
            running,
            done,
            failed,
            skipped,
        }
    }

    /// Labels nodes `first..first + labels.len()` for `counts_by_label` (a monitor's view
    /// by task name: labelled once, then counted in one pass per look). `first` may not
    /// leave a gap after the nodes labelled so far; labelling a node again relabels it.
    pub fn set_labels(&mut self, first: NodeId, labels: &[u32]) -> Result<(), SchedError> {
        let start = first as usize;
        let end = start + labels.len();
        if start > self.labels.len() {
            return Err(SchedError::OutOfRange(first));
        }
        if end > self.states.of.len() {
            return Err(SchedError::OutOfRange((end - 1) as NodeId));
        }
        if end > self.labels.len() {
            self.labels.resize(end, 0);
        }
        self.labels[start..end].copy_from_slice(labels);
        Ok(())
    }

    /// How many nodes now labelled (`set_labels`).
    pub fn labelled(&self) -> usize {
        self.labels.len()
    }

    /// Per label (index = label, up to the highest one given), its labelled nodes' counts
    /// by state in the order of `NodeState::ALL`. One pass over the labelled nodes;
    /// nodes without a label yet are left out.
    pub fn counts_by_label(&self) -> Vec<[usize; 6]> {
        let top = self
            .labels
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut out = vec![[0usize; 6]; top];
        for (label, state) in self.labels.iter().zip(&self.states.of) {
            out[*label as usize][*state as usize] += 1;
        }
        out
    }

    /// The edges between labelled nodes counted per (source label, target label), sorted:
    /// the graph collapsed by label (added nodes' edges included, those `defer` gave
    /// nodes of the graph left out). One pass over the labelled nodes' predecessors.
    pub fn edge_counts_by_label(&self) -> Vec<(u32, u32, usize)> {
        let labels = &self.labels;
        let base = self.graph.node_count();
        let mut counts: std::collections::HashMap<(u32, u32), usize> = Default::default();
        let mut count = |p: NodeId, label: u32| {
            if let Some(&from) = labels.get(p as usize) {
                *counts.entry((from, label)).or_insert(0) += 1;
            }
        };
        for (v, &label) in labels.iter().enumerate() {
            if v < base {
                for &p in self.graph.predecessors(v as NodeId) {
                    count(p, label);
                }
            } else {
                for p in self.growth.predecessors(v as NodeId, (v - base) as u32) {
                    count(p, label);
                }
            }
        }
        let mut out: Vec<(u32, u32, usize)> =
            counts.into_iter().map(|((a, b), n)| (a, b, n)).collect();
        out.sort_unstable();
        out
    }

    /// Nothing Pending, Ready or Running.
    pub fn is_finished(&self) -> bool {
        let c = self.counts();
        c.pending == 0 && c.ready == 0 && c.running == 0
    }
}

/// One predecessor of `s` is Done: it becomes Ready when it was the last one.
#[inline]
fn release(waiting: &mut [u32], states: &mut States, s: NodeId, fresh: &mut Vec<NodeId>) {
    let w = &mut waiting[s as usize];
    *w -= 1;
    if *w == 0 && states.of[s as usize] == NodeState::Pending {
        states.set(s, NodeState::Ready);
        fresh.push(s);
    }
}
