//! Retention: what visitors wrote is kept as long as the workspace says, then deleted.
//!
//! A sweep reads every workspace's policy ([`RetentionSettings`]) and, for each bot, pages
//! through its conversations: one whose last message (or start, with none) is older than the
//! bot's `config.retention_days` or the workspace's `conversation_days` is deleted through its
//! actor ([`Engine::delete_conversation`]: nothing is appended behind the deletion, open widgets
//! are told), exactly as an agent's delete or an erasure does. Then the unmatched-messages list
//! forgets entries older than `unmatched_days`. Counters stay: they hold no personal data.
//!
//! The sweep keeps no state of its own: it reads what is stored each time, so a sweep cut short
//! (a restart, a deploy) is finished by the next one. It runs on the admin role every
//! `[retention] sweep_secs`, with the real clock; [`Engine::sweep_retention`] takes `now` so a
//! test can move time.

use std::time::Duration;

use parla_domain::analytics::DAY_MS;
use parla_domain::model::RetentionSettings;

use crate::{Deletion, Engine, EngineError};

/// What one sweep deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub conversations: u64,
    /// Entries of the unmatched-messages list (where the store can count them).
    pub unmatched: u64,
    /// Conversations whose actor did not confirm the deletion in time, and workspaces the sweep
    /// could not read (the next sweep retries both).
    pub failed: u64,
}

/// Conversations read per page.
const PAGE: usize = 200;
/// How long one deletion may take before the sweep moves on.
const DELETE_WAIT: Duration = Duration::from_secs(10);

impl Engine {
    /// Deletes what the workspaces' retention policies say is too old at `now_ms`.
    pub async fn sweep_retention(&self, now_ms: i64) -> Result<Swept, EngineError> {
        let store = self.store().clone();
        let mut swept = Swept::default();
        for tenant_id in store.list_tenants().await? {
            // One workspace's trouble (a store error, a secret that will not open) is logged
            // and left for the next round; the others are still swept.
            if let Err(e) = self.sweep_workspace(&tenant_id, now_ms, &mut swept).await {
                tracing::warn!(tenant = %tenant_id, error = %e, "retention: workspace not swept");
                swept.failed += 1;
            }
        }
        // No compaction here (an erasure compacts): it would stall live chat every round, and
        // the freed pages are reused by what is written next.
        Ok(swept)
    }

    async fn sweep_workspace(
        &self,
        tenant_id: &parla_domain::model::TenantId,
        now_ms: i64,
        swept: &mut Swept,
    ) -> Result<(), EngineError> {
        let store = self.store().clone();
        let tenant_id = tenant_id.clone();
        {
            let Some(tenant) = store.get_tenant(&tenant_id).await? else { return Ok(()) };
            let policy: RetentionSettings = tenant.retention;
            for bot in store.list_bots(&tenant_id).await? {
                let Some(days) = bot.config.retention_days.or(policy.conversation_days) else {
                    continue;
                };
                let cutoff = now_ms.saturating_sub(i64::from(days) * DAY_MS);
                let mut before = None;
                loop {
                    let page = store
                        .list_conversations(&tenant_id, &bot.id, before.as_ref(), PAGE)
                        .await?;
                    let Some(last) = page.last() else { break };
                    before = Some(last.id.clone());
                    for conversation in page {
                        let last = store.last_message(&tenant_id, &conversation.id).await?;
                        let active = last.map_or(conversation.started_at, |m| m.created_at);
                        if active >= cutoff {
                            continue;
                        }
                        match self.delete_conversation(&conversation.key(), DELETE_WAIT).await? {
                            Deletion::Deleted => swept.conversations += 1,
                            Deletion::Refused(why) => {
                                tracing::warn!(%why, "retention: a conversation refused deletion");
                                swept.failed += 1;
                            }
                            Deletion::TimedOut => swept.failed += 1,
                        }
                    }
                }
            }
            if let Some(days) = policy.unmatched_days {
                let cutoff = now_ms.saturating_sub(i64::from(days) * DAY_MS);
                swept.unmatched += store.forget_unmatched(&tenant_id, cutoff).await?;
            }
        }
        Ok(())
    }

    /// Sweeps every `every` with the real clock, for as long as the runtime runs.
    pub fn spawn_retention(&self, every: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match engine.sweep_retention(parla_domain::model::now_ms()).await {
                    Ok(swept) if swept != Swept::default() => {
                        tracing::info!(?swept, "retention sweep deleted what its policies say");
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "retention sweep failed; next round retries")
                    }
                }
            }
        });
    }
}
