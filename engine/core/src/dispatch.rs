//! The dispatcher: gives a tenant's waiting (ESCALATED) conversations to its online agents.
//!
//! One task per tenant, started when its first agent signs in. It follows the tenant's feed —
//! every change of hands and every presence change — and keeps who waits since when and who
//! holds what. After each change it assigns the longest-waiting conversations to online agents
//! under their cap (`max_chats_per_agent`), least loaded first or round robin, as the tenant's
//! `agents.assignment` says (`manual`: nothing is assigned). Assigning is a command to the
//! conversation's actor, which does it only if the conversation still waits: an agent who
//! claims it by hand first wins, without a race.
//!
//! In a cluster every node with a signed-in agent of the tenant runs the task and follows the
//! feed, but only the holder of the tenant's lease assigns (one desk, one round-robin turn);
//! the agents it sees are those of every node. The lease is renewed on a tick, and another
//! node takes it within [`LEASE_TERM`] when its holder dies. The tick also retries what an earlier
//! pass could not assign.

use std::{
    collections::{BTreeSet, HashMap},
    time::Instant,
};

use tokio::sync::broadcast::error::RecvError;

use crate::{
    agents::{AgentAction, AgentCommand},
    bus::TenantEvent,
    engine::{LEASE_TERM, Lease, WeakEngine},
    model::{AccountId, Assignment, ConversationId, ConversationKey, ConversationStatus, TenantId},
    presence::PresenceStatus,
};

#[derive(Debug, Default)]
struct Desk {
    /// (waiting since, conversation): the queue, oldest first.
    waiting: BTreeSet<(i64, ConversationId)>,
    /// Conversation → the agent holding it.
    held: HashMap<ConversationId, AccountId>,
    /// The agent given the last conversation (round robin).
    last: Option<AccountId>,
}

impl Desk {
    fn forget(&mut self, id: &ConversationId) {
        self.waiting.retain(|(_, c)| c != id);
        self.held.remove(id);
    }

    fn load(&self, agent: &AccountId) -> usize {
        self.held.values().filter(|a| *a == agent).count()
    }
}

pub(crate) async fn run(engine: WeakEngine, tenant: TenantId) {
    let Some(e) = engine.upgrade() else { return };
    let mut feed = e.subscribe_tenant(&tenant).await;
    drop(e);
    let mut desk = Desk::default();
    reload(&engine, &tenant, &mut desk).await;
    let mut tick = tokio::time::interval(LEASE_TERM / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Until when this node surely holds the lease.
    let mut until: Option<Instant> = None;
    let mut fresh = true; // The desk was just read from the store.
    while let Some(lasts) = lead_until(&engine, &tenant).await {
        match lasts {
            Some(lasts) => {
                // Newly leading: the desk kept from the feed may have missed events (pub/sub
                // drops silently in a cluster), so it is read again.
                if until.is_none_or(|u| Instant::now() >= u) && !fresh {
                    reload(&engine, &tenant, &mut desk).await;
                }
                until = Some(lasts);
                assign(&engine, &tenant, &mut desk, lasts).await;
            }
            None => until = None,
        }
        fresh = false;
        let event = tokio::select! {
            event = feed.recv() => event,
            _ = tick.tick() => continue,
        };
        match event {
            Ok(event) => match &*event {
                TenantEvent::Conversation { conversation_id, handling, .. } => {
                    desk.forget(conversation_id);
                    match (handling.status, &handling.assignee) {
                        (ConversationStatus::Escalated, None) => {
                            let since = handling.waiting_since.unwrap_or(0);
                            desk.waiting.insert((since, conversation_id.clone()));
                        }
                        (_, Some(agent)) => {
                            desk.held.insert(conversation_id.clone(), agent.id.clone());
                        }
                        _ => {}
                    }
                }
                TenantEvent::Presence { .. } => {} // Assigning again above is enough.
                TenantEvent::Member { .. } => {}   // Presence follows the member's sockets.
            },
            Err(RecvError::Lagged(_)) => reload(&engine, &tenant, &mut desk).await,
            Err(RecvError::Closed) => break,
        }
    }
}

/// Until when this node routes `tenant`'s conversations (`Some(None)`: another node does);
/// `None` once the engine is gone.
async fn lead_until(engine: &WeakEngine, tenant: &TenantId) -> Option<Option<Instant>> {
    let engine = engine.upgrade()?;
    Some(match engine.lease(&format!("dispatch:{}", tenant.0)).await {
        Lease::Held { until } => Some(until),
        // Unknown (Redis unreachable): route anyway rather than not at all; each assignment is
        // checked by the conversation's actor (given only while the conversation still waits).
        Lease::Unknown { until } => Some(until),
        Lease::Elsewhere => None,
    })
}

/// Reads the desk again: every conversation waiting for or held by an agent, from the store's
/// index (whatever the number of other conversations).
async fn reload(engine: &WeakEngine, tenant: &TenantId, desk: &mut Desk) {
    let Some(engine) = engine.upgrade() else { return };
    match engine.needing_agents(tenant).await {
        Ok(conversations) => {
            let last = desk.last.take();
            *desk = Desk { last, ..Desk::default() };
            for c in conversations {
                match (c.handling.status, c.handling.assignee) {
                    (ConversationStatus::Escalated, None) => {
                        let since = c.handling.waiting_since.unwrap_or(0);
                        desk.waiting.insert((since, c.id));
                    }
                    (_, Some(agent)) => {
                        desk.held.insert(c.id, agent.id);
                    }
                    _ => {}
                }
            }
        }
        Err(e) => {
            tracing::warn!(tenant = %tenant, error = %e, "dispatcher could not read the inbox")
        }
    }
}

/// Assigns waiting conversations while the lease surely lasts (`until`).
async fn assign(engine: &WeakEngine, tenant: &TenantId, desk: &mut Desk, until: Instant) {
    if desk.waiting.is_empty() {
        return;
    }
    let Some(engine) = engine.upgrade() else { return };
    let settings = match engine.store().get_tenant(tenant).await {
        Ok(Some(t)) => t.agents,
        _ => return,
    };
    if settings.assignment == Assignment::Manual {
        return;
    }
    let cap = settings.max_chats_per_agent as usize;
    let mut online: Vec<_> = engine
        .presence()
        .list_anywhere(tenant)
        .await
        .into_iter()
        .filter(|p| p.status == PresenceStatus::Online)
        .map(|p| p.agent)
        .collect();
    online.sort_by(|a, b| a.id.cmp(&b.id));
    while let Some((since, id)) = desk.waiting.first().cloned() {
        if Instant::now() >= until {
            return; // Renewed (or not) before going on.
        }
        let free: Vec<_> = online.iter().filter(|a| desk.load(&a.id) < cap).collect();
        let chosen = match settings.assignment {
            Assignment::LeastLoaded => free.iter().min_by_key(|a| desk.load(&a.id)).copied(),
            Assignment::RoundRobin => {
                let after = desk.last.as_ref();
                free.iter()
                    .find(|a| after.is_some_and(|last| a.id > *last))
                    .or_else(|| free.first())
                    .copied()
            }
            Assignment::Manual => None,
        };
        let Some(agent) = chosen.cloned() else { return }; // Everyone is busy or away.
        desk.waiting.remove(&(since, id.clone()));
        desk.held.insert(id.clone(), agent.id.clone());
        desk.last = Some(agent.id.clone());
        let key = ConversationKey { tenant_id: tenant.clone(), conversation_id: id.clone() };
        let command = AgentCommand {
            agent: crate::agents::dispatcher(),
            privileged: true,
            action: AgentAction::Assign { to: agent.clone() },
        };
        match engine.command(key, command).await {
            Ok(_) => tracing::info!(conversation = %id, agent = %agent.id, "conversation assigned"),
            Err(e) => {
                tracing::warn!(conversation = %id, error = %e, "could not assign a conversation");
                desk.held.remove(&id);
                desk.waiting.insert((since, id)); // Still waiting: tried again on the next change or tick.
                return;
            }
        }
    }
}
