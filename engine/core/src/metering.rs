//! Usage billed by use, as part of [`Billing`]: a plan's metered limits (conversations, LLM
//! tokens) reported to the provider's meters (Stripe Meters) from the counters Parla keeps
//! exactly, each unit once.
//!
//! Per workspace, meter and month the store keeps two counters beside the usage: *claimed*
//! (usage some node took on to report) and *reported* (usage the provider acknowledged). A round
//! reports the range `reported..claimed` when a report is outstanding (a lost answer, a crash),
//! else claims `claimed..used` — atomically, so of racing nodes one claims — and reports it. The
//! report's identifier is made from the range's end, so a resent report is the same meter
//! event and the provider counts it once; then `reported` moves to the range's end, again only
//! if it is where this round found it.
//!
//! Only a subscription in force is reported, and only usage from when it came into force: when
//! a workspace subscription comes into force, this month's usage so far is marked reported
//! without sending it (it was the free plan's). A month is reported again after it ended (its
//! last minutes) only if it was reported in.
//!
//! Reports carry no time: Stripe books each when it receives it, so usage lands in the billing
//! period (the subscription's, not the calendar month) at most one reporting round late, and a
//! resent report is byte for byte the first (Stripe refuses an idempotency key reused with
//! other parameters).

use std::collections::HashSet;
use std::sync::Arc;

use parla_domain::billing::{Limit, MeterReport, Payments, Plan, Subscription, SubscriptionKind};
use parla_domain::model::{TenantId, month_of, now_ms, utc_date};

use crate::billing::{Billing, BillingError};

/// Marks a month whose usage is reported (1 once set).
const METERING: &str = "stripe:metering";

fn claimed(limit: Limit) -> String {
    format!("stripe:claimed:{}", limit.as_str())
}

fn reported(limit: Limit) -> String {
    format!("stripe:reported:{}", limit.as_str())
}

/// The start of `ms`'s calendar month (UTC), Unix milliseconds.
fn month_start(ms: i64) -> i64 {
    let (_, _, day) = utc_date(ms);
    (ms.div_euclid(86_400_000) - (day - 1)) * 86_400_000
}

/// A meter's counters for a month: (used, claimed, reported).
struct Counters {
    used: u64,
    claimed: u64,
    reported: u64,
}

impl Billing {
    /// Reports every workspace's metered usage not yet reported: how many reports were sent.
    /// A report the provider did not acknowledge is sent again, the same, next round.
    pub async fn report_usage(&self) -> Result<usize, BillingError> {
        let payments = self.payments()?.clone();
        let now = now_ms();
        let this_month = month_of(now);
        let last_month = month_of(month_start(now) - 1);
        let mut tenants = HashSet::new();
        let mut sent = 0;
        for sub in self.store.live_subscriptions().await? {
            let Some(plan) = self.metered_plan(&sub, now) else { continue };
            if !tenants.insert(sub.tenant_id.clone()) {
                continue;
            }
            let tenant = &sub.tenant_id;
            let marked = |counters: Vec<(String, u64)>| counters.iter().any(|(m, _)| m == METERING);
            // Last month's final minutes, when it was reported in.
            if marked(self.store.usage(tenant, &last_month).await?) {
                sent += self.report_month(&payments, &sub, plan, &last_month).await?;
            }
            self.store.count_within(tenant, &this_month, METERING, 1, Some(1)).await?;
            sent += self.report_month(&payments, &sub, plan, &this_month).await?;
        }
        Ok(sent)
    }

    /// The plan a workspace subscription in force pays for, when it bills some usage.
    fn metered_plan(&self, sub: &Subscription, now: i64) -> Option<&Plan> {
        let SubscriptionKind::Workspace { plan } = &sub.kind else { return None };
        let plan = self.config.plans.get(plan)?;
        (!plan.meters.is_empty() && sub.in_force(now, self.config.plans.grace_ms)).then_some(plan)
    }

    async fn counters(
        &self,
        tenant: &TenantId,
        limit: Limit,
        month: &str,
    ) -> Result<Counters, BillingError> {
        let kept = self.store.usage(tenant, month).await?;
        let get = |name: &str| kept.iter().find(|(m, _)| m == name).map_or(0, |(_, n)| *n);
        Ok(Counters {
            used: self.used_in(tenant, limit, month).await?,
            claimed: get(&claimed(limit)),
            reported: get(&reported(limit)),
        })
    }

    /// Reports one month's metered usage for `sub`'s workspace: how many reports were
    /// acknowledged.
    async fn report_month(
        &self,
        payments: &Arc<dyn Payments>,
        sub: &Subscription,
        plan: &Plan,
        month: &str,
    ) -> Result<usize, BillingError> {
        let tenant = &sub.tenant_id;
        let mut sent = 0;
        for (&limit, event_name) in &plan.meters {
            let c = self.counters(tenant, limit, month).await?;
            let (claimed, reported) = (claimed(limit), reported(limit));
            let (from, to) = if c.claimed > c.reported {
                // Outstanding: maybe sent, maybe not. The same report again.
                (c.reported, c.claimed)
            } else if c.used > c.claimed {
                let n = c.used - c.claimed;
                let claim = self.store.count_within(tenant, month, &claimed, n, Some(c.used));
                if claim.await?.is_none() {
                    continue; // another node claimed it first, and reports it
                }
                (c.claimed, c.used)
            } else {
                continue;
            };
            let report = MeterReport {
                event_name: event_name.clone(),
                customer: sub.customer.clone(),
                value: to - from,
                identifier: format!("parla-{tenant}-{}-{month}-{to}", limit.as_str()),
            };
            match payments.report_usage(&report).await {
                Ok(()) => {
                    let n = to - from;
                    self.store.count_within(tenant, month, &reported, n, Some(to)).await?;
                    sent += 1;
                }
                Err(e) => {
                    tracing::warn!(tenant = %tenant, meter = %event_name, error = %e, "usage not reported yet; will resend")
                }
            }
        }
        Ok(sent)
    }

    /// A workspace subscription comes into force: this month's metered usage so far is marked
    /// reported without being sent (it was counted under the plan before).
    pub(crate) async fn start_metering(&self, sub: &Subscription) -> Result<(), BillingError> {
        let now = now_ms();
        let Some(plan) = self.metered_plan(sub, now) else { return Ok(()) };
        let tenant = &sub.tenant_id;
        let month = month_of(now);
        for &limit in plan.meters.keys() {
            let c = self.counters(tenant, limit, &month).await?;
            // With a report outstanding (another subscription's), that one goes first.
            if c.claimed == c.reported && c.used > c.claimed {
                let n = c.used - c.claimed;
                if self
                    .store
                    .count_within(tenant, &month, &claimed(limit), n, Some(c.used))
                    .await?
                    .is_some()
                {
                    self.store
                        .count_within(tenant, &month, &reported(limit), n, Some(c.used))
                        .await?;
                }
            }
        }
        self.store.count_within(tenant, &month, METERING, 1, Some(1)).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_month_starts_at_midnight_on_its_first_day() {
        // 2026-12-07T20:45:25Z and 2024-03-01T00:00:00Z (a leap year's February before it).
        assert_eq!(month_start(1_796_676_325_000), 1_796_083_200_000);
        assert_eq!(month_of(month_start(1_796_676_325_000) - 1), "2026-11");
        assert_eq!(month_start(1_709_251_200_000), 1_709_251_200_000);
        assert_eq!(month_of(1_709_251_200_000 - 1), "2024-02");
    }
}
