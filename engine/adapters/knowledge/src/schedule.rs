//! Which document is processed next: fair across tenants, bounded in memory.
//!
//! Each tenant has its own FIFO; tenants take turns (round robin), so one tenant's hundred
//! uploads or one slow scrape delay another tenant's document by at most one document per
//! worker, not by the whole backlog. A tenant holds at most `per_tenant_running` workers at once
//! (the knowledge base uses half of them, rounded up), so a tenant's slow documents never take
//! every worker: another tenant's document finds one free.
//!
//! The store's list of unfinished documents is the durable queue; this is its in-memory view,
//! at most `per_tenant_queued` ids a tenant. Past that an id is not held here: the schedule
//! notes that the tenant overflowed, the document waits PENDING in the store, and once that
//! tenant's queue has run dry a worker is told to read the store's list again
//! ([`Take::Refill`]). Nothing is lost, nothing grows without bound, and a submit never waits.

use std::collections::{HashMap, HashSet, VecDeque};

use parking_lot::Mutex;
use tokio::sync::Notify;

use parla_domain::model::TenantId;

/// What a worker gets from [`Schedule::next`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Process this document, then call [`Schedule::done`].
    Job(TenantId, String),
    /// A tenant whose ids overflowed has an empty queue: read the store's unfinished documents
    /// of these tenants and push those not held.
    Refill(Vec<TenantId>),
    /// The knowledge base is gone: stop.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Schedule {
    state: Mutex<State>,
    /// Wakes waiting workers when a document is queued, one finishes, or the schedule closes.
    ready: Notify,
    per_tenant_queued: usize,
    per_tenant_running: usize,
}

#[derive(Debug, Default)]
struct State {
    queues: HashMap<TenantId, VecDeque<String>>,
    /// Tenants with queued documents, in turn order.
    turns: VecDeque<TenantId>,
    queued: HashSet<(TenantId, String)>,
    running: HashMap<TenantId, usize>,
    running_ids: HashSet<(TenantId, String)>,
    /// Tenants with documents left to the store since the last refill.
    overflowed: HashSet<TenantId>,
    closed: bool,
}

impl Schedule {
    pub(crate) fn new(per_tenant_queued: usize, per_tenant_running: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
            per_tenant_queued: per_tenant_queued.max(1),
            per_tenant_running: per_tenant_running.max(1),
        }
    }

    /// Queues a document unless it is queued already (not running: a document reprocessed
    /// while it runs is queued again, to run after).
    pub(crate) fn push(&self, tenant: &TenantId, id: &str) {
        {
            let mut state = self.state.lock();
            let key = (tenant.clone(), id.to_owned());
            if state.queued.contains(&key) {
                return;
            }
            let queue = state.queues.entry(tenant.clone()).or_default();
            if queue.len() >= self.per_tenant_queued {
                state.overflowed.insert(tenant.clone()); // It waits PENDING in the store.
                return;
            }
            queue.push_back(id.to_owned());
            if queue.len() == 1 {
                state.turns.push_back(tenant.clone());
            }
            state.queued.insert(key);
        }
        self.ready.notify_waiters();
    }

    /// Whether a document is queued or running (a refill skips those).
    pub(crate) fn holds(&self, tenant: &TenantId, id: &str) -> bool {
        let state = self.state.lock();
        let key = (tenant.clone(), id.to_owned());
        state.queued.contains(&key) || state.running_ids.contains(&key)
    }

    /// The next thing to do, waiting while there is none.
    pub(crate) async fn next(&self) -> Take {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable(); // Before looking, so no wake-up is missed.
            if let Some(take) = self.take() {
                return take;
            }
            notified.await;
        }
    }

    /// The next thing to do, if any, now.
    fn take(&self) -> Option<Take> {
        let mut state = self.state.lock();
        if state.closed {
            return Some(Take::Closed);
        }
        // Before the turns: an overflowed tenant whose queue ran dry must not wait for every
        // other tenant's backlog. A refill fills its queue again (or finds nothing left), so
        // this does not repeat until it overflows and runs dry again.
        if state.overflowed.iter().any(|t| !state.queues.contains_key(t)) {
            // A refill reads every overflowed tenant's; pushes note overflows anew.
            let tenants = std::mem::take(&mut state.overflowed).into_iter().collect();
            return Some(Take::Refill(tenants));
        }
        for _ in 0..state.turns.len() {
            let Some(tenant) = state.turns.pop_front() else { break };
            let running = state.running.get(&tenant).copied().unwrap_or(0);
            if running >= self.per_tenant_running {
                state.turns.push_back(tenant); // Its turn comes again once one of its ends.
                continue;
            }
            let Some(queue) = state.queues.get_mut(&tenant) else { continue };
            let Some(id) = queue.pop_front() else { continue };
            if queue.is_empty() {
                state.queues.remove(&tenant);
            } else {
                state.turns.push_back(tenant.clone());
            }
            let key = (tenant.clone(), id.clone());
            state.queued.remove(&key);
            state.running_ids.insert(key);
            *state.running.entry(tenant.clone()).or_default() += 1;
            return Some(Take::Job(tenant, id));
        }
        None
    }

    /// A document taken by [`Schedule::next`] is finished (processed or not).
    pub(crate) fn done(&self, tenant: &TenantId, id: &str) {
        {
            let mut state = self.state.lock();
            state.running_ids.remove(&(tenant.clone(), id.to_owned()));
            if let Some(running) = state.running.get_mut(tenant) {
                *running = running.saturating_sub(1);
                if *running == 0 {
                    state.running.remove(tenant);
                }
            }
        }
        self.ready.notify_waiters();
    }

    /// Stops every worker (they get [`Take::Closed`]).
    pub(crate) fn close(&self) {
        self.state.lock().closed = true;
        self.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(tenant: &str, id: &str) -> Option<Take> {
        Some(Take::Job(TenantId::from(tenant), id.to_owned()))
    }

    #[test]
    fn tenants_take_turns_whatever_their_backlog() {
        let schedule = Schedule::new(100, 10);
        let (a, b) = (TenantId::from("a"), TenantId::from("b"));
        for id in ["a1", "a2", "a3"] {
            schedule.push(&a, id);
        }
        schedule.push(&b, "b1");
        schedule.push(&b, "b2");
        schedule.push(&a, "a1"); // Already queued: once.
        let order: Vec<Option<Take>> = (0..5).map(|_| schedule.take()).collect();
        assert_eq!(
            order,
            [job("a", "a1"), job("b", "b1"), job("a", "a2"), job("b", "b2"), job("a", "a3")]
        );
        assert_eq!(schedule.take(), None);
    }

    #[test]
    fn a_tenant_never_holds_more_workers_than_its_share() {
        let schedule = Schedule::new(100, 1);
        let (a, b) = (TenantId::from("a"), TenantId::from("b"));
        schedule.push(&a, "slow-scrape");
        schedule.push(&a, "a2");
        assert_eq!(schedule.take(), job("a", "slow-scrape"));
        assert_eq!(schedule.take(), None, "a's second document waits for its first");
        schedule.push(&b, "b1");
        assert_eq!(schedule.take(), job("b", "b1"), "b is served while a's scrape runs");
        schedule.done(&a, "slow-scrape");
        assert_eq!(schedule.take(), job("a", "a2"));
    }

    #[test]
    fn overflow_waits_in_the_store_and_is_read_back_once_the_queues_are_dry() {
        let schedule = Schedule::new(1, 1);
        let a = TenantId::from("a");
        schedule.push(&a, "a1");
        schedule.push(&a, "a2"); // Over the bound: left to the store.
        assert!(!schedule.holds(&a, "a2"));
        assert_eq!(schedule.take(), job("a", "a1"));
        assert!(schedule.holds(&a, "a1"), "running");
        assert_eq!(schedule.take(), Some(Take::Refill(vec![a.clone()])), "a's queue ran dry");
        assert_eq!(schedule.take(), None, "one refill per overflow");
        schedule.push(&a, "a2"); // What the refill read back.
        schedule.done(&a, "a1");
        assert_eq!(schedule.take(), job("a", "a2"));

        // Another tenant's backlog does not hold the refill back.
        let schedule = Schedule::new(1, 5);
        let b = TenantId::from("b");
        schedule.push(&a, "a1");
        schedule.push(&a, "a2"); // Overflows.
        schedule.push(&b, "b1");
        assert_eq!(schedule.take(), job("a", "a1"));
        assert_eq!(schedule.take(), Some(Take::Refill(vec![a.clone()])), "a ran dry; b1 waits");
        assert_eq!(schedule.take(), job("b", "b1"));
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_for_new_work_and_for_closing() {
        let schedule = std::sync::Arc::new(Schedule::new(10, 1));
        let waiter = tokio::spawn({
            let schedule = schedule.clone();
            async move { schedule.next().await }
        });
        tokio::task::yield_now().await;
        schedule.push(&TenantId::from("t"), "d");
        assert_eq!(waiter.await.expect("worker"), Take::Job(TenantId::from("t"), "d".into()));
        let waiter = tokio::spawn({
            let schedule = schedule.clone();
            async move { schedule.next().await }
        });
        tokio::task::yield_now().await;
        schedule.close();
        assert_eq!(waiter.await.expect("worker"), Take::Closed);
    }
}
