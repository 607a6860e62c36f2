//! The moment by which a request must be answered, and how it shrinks from
//! hop to hop. Every call to another node is bounded by the deadline of the
//! request it serves; the budget left travels with the call (see
//! `wire::BUDGET_HEADER`), a little smaller at each hop, so that the node
//! nearest a fault times out, and reports it, before the nodes below it do.

use std::time::{Duration, Instant};

/// The moment by which a request must be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(pub Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    /// The deadline of a request that carried `budget` (from the budget
    /// header, if any), capped by this node's own bound.
    pub fn from_budget(budget: Option<Duration>, own: Duration) -> Deadline {
        Deadline::after(budget.map_or(own, |b| b.min(own)))
    }

    pub fn remaining(&self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    pub fn passed(&self) -> bool {
        self.remaining().is_zero()
    }

    /// The budget to hand to the next hop: a little less than ours, so that
    /// the next hop times out, and reports, before we do.
    pub fn for_next_hop(&self) -> Duration {
        let r = self.remaining();
        r.saturating_sub((r / 10).max(Duration::from_millis(20)))
    }

    /// The latest moment the node that sent us this budget may still be
    /// waiting on us, plus `slack`: it kept up to a ninth more for itself
    /// (`for_next_hop`), so its own deadline is at most an eighth past ours.
    pub fn callers_end(&self, slack: Duration) -> Instant {
        self.0 + self.remaining() / 8 + slack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_shrink_at_each_hop() {
        let d = Deadline::after(Duration::from_secs(2));
        let next = d.for_next_hop();
        assert!(next < d.remaining());
        assert!(next > Duration::from_millis(1500));
        let tiny = Deadline::after(Duration::from_millis(10));
        assert_eq!(tiny.for_next_hop(), Duration::ZERO);
    }

    #[test]
    fn a_carried_budget_is_capped_by_our_own() {
        let own = Duration::from_secs(3);
        let short = Deadline::from_budget(Some(Duration::from_millis(500)), own);
        assert!(short.remaining() <= Duration::from_millis(500));
        let long = Deadline::from_budget(Some(Duration::from_secs(99)), own);
        assert!(long.remaining() <= own);
        assert!(Deadline::from_budget(None, own).remaining() > Duration::from_secs(2));
    }

    #[test]
    fn a_passed_deadline_has_nothing_left() {
        let d = Deadline::after(Duration::ZERO);
        assert!(d.passed());
        assert_eq!(d.for_next_hop(), Duration::ZERO);
    }
}
