//! Sharing an engine's slots among its concurrent runs: the common case of the Python
//! `SharedSlots.rebalance`, which runs once per event-loop turn over every run.

/// The capacities of runs whose demand fits in `total` slots, or None when it does not.
///
/// Run `i` has `running[i]` nodes running in its scheduler, `away[i]` of them seceded (on no
/// slot), and `ready[i]` ready. Its demand is the nodes on a slot plus the ready ones; each
/// run gets its demand and an equal share of the slots nobody asked for (the first
/// `left % runs` one more), plus its seceded nodes, which its scheduler counts as running.
pub fn share_fitting(
    running: &[usize],
    away: &[usize],
    ready: &[usize],
    total: usize,
) -> Option<Vec<usize>> {
    let runs = running.len();
    if runs == 0 {
        return Some(Vec::new());
    }
    // signed: a run's seceded count may briefly exceed what its scheduler still runs
    let demand: i64 = (0..runs)
        .map(|i| running[i] as i64 - away[i] as i64 + ready[i] as i64)
        .sum();
    let left = total as i64 - demand;
    if left < 0 {
        return None;
    }
    let (share, odd) = (left / runs as i64, (left % runs as i64) as usize);
    Some(
        (0..runs)
            // demand[i] + share + odd + away[i]: the seceded nodes cancel out
            .map(|i| (running[i] as i64 + ready[i] as i64 + share) as usize + usize::from(i < odd))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::share_fitting;

    #[test]
    fn each_run_gets_its_demand_and_an_equal_share_of_the_rest() {
        // demands 3 and 1 of 10 slots: 6 left, 3 each
        assert_eq!(
            share_fitting(&[2, 1], &[0, 0], &[1, 0], 10),
            Some(vec![6, 4])
        );
        // demands 2 and 1: 7 left over 2 runs, the first gets the odd one
        assert_eq!(
            share_fitting(&[2, 1], &[0, 0], &[0, 0], 10),
            Some(vec![6, 4])
        );
    }

    #[test]
    fn seceded_nodes_hold_no_slot_but_stay_in_the_capacity() {
        // run 0 runs 3, 2 of them seceded: demand 1 + 1 ready; 8 left
        assert_eq!(share_fitting(&[3], &[2], &[1], 10), Some(vec![12]));
    }

    #[test]
    fn a_demand_that_does_not_fit_gives_nothing() {
        assert_eq!(share_fitting(&[5, 5], &[0, 0], &[1, 0], 10), None);
        assert_eq!(share_fitting(&[], &[], &[], 0), Some(vec![]));
    }

    #[test]
    fn the_capacities_sum_to_the_slots_plus_the_seceded() {
        let (running, away, ready) = ([4, 0, 7, 2], [1, 0, 3, 0], [0, 5, 1, 2]);
        let caps = share_fitting(&running, &away, &ready, 40).unwrap();
        assert_eq!(caps.iter().sum::<usize>(), 40 + away.iter().sum::<usize>());
    }
}
