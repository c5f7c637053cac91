//! Stripe, as Parla uses it: a small typed client over reqwest for the few endpoints it calls,
//! and the webhook signature check. ADR 0006 says why not `async-stripe`.
//!
//! - Every request pins [`API_VERSION`] (subscription periods live on its items since
//!   2025-03-31), and every POST carries an `Idempotency-Key`: a request retried after a
//!   network failure or a 5xx/429 (once) is the same request at Stripe.
//! - Bodies are form-encoded with Stripe's bracket notation (`metadata[tenant_id]=…`).
//! - [`verify`] checks `Stripe-Signature` (`t=…,v1=…`): HMAC-SHA256 of `"{t}.{raw body}"` under
//!   any configured secret (rotation), against any `v1` given, in constant time, and refuses a
//!   timestamp further than the tolerance from now — before the body is parsed.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use parla_domain::billing::{
    CheckoutRequest, EventObject, MeterReport, PaymentError, Payments, ProviderEvent,
    ProviderSubscription, SubscriptionStatus,
};
use parla_domain::model::TenantId;
use serde_json::Value;
use sha2::Sha256;

/// The Stripe API version every request pins (stripe-mock v0.203.0's spec is this one).
pub const API_VERSION: &str = "2026-08-26.dahlia";

/// Stripe's client for Parla.
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base: String,
    key: String,
    secrets: Vec<String>,
    tolerance_secs: i64,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe").field("base", &self.base).finish_non_exhaustive()
    }
}

impl Stripe {
    pub fn new(
        base: &str,
        key: &str,
        webhook_secrets: Vec<String>,
        tolerance: Duration,
        timeout: Duration,
    ) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("parla/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            secrets: webhook_secrets,
            tolerance_secs: i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX),
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(String, String)],
        idempotency_key: Option<&str>,
    ) -> Result<Value, PaymentError> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let mut last = PaymentError::Unavailable("not sent".into());
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(&self.key)
                .header("Stripe-Version", API_VERSION);
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if method != reqwest::Method::GET {
                request = request
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = PaymentError::Unavailable(format!("stripe: {e}"));
                    continue;
                }
            };
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(json);
            }
            let message = json["error"]["message"].as_str().unwrap_or("no message").to_owned();
            let err = format!("{} ({status})", message);
            // A retry is the same request (same key) only where one was given.
            if (status.is_server_error() || status.as_u16() == 429) && idempotency_key.is_some() {
                last = PaymentError::Unavailable(err);
                continue;
            }
            return Err(if status.is_server_error() {
                PaymentError::Unavailable(err)
            } else {
                PaymentError::Refused(err)
            });
        }
        Err(last)
    }

    async fn post(
        &self,
        path: &str,
        form: &[(String, String)],
        idempotency_key: &str,
    ) -> Result<Value, PaymentError> {
        self.send(reqwest::Method::POST, path, form, Some(idempotency_key)).await
    }
}

fn pair(k: impl Into<String>, v: impl Into<String>) -> (String, String) {
    (k.into(), v.into())
}

/// A path segment from an id the caller holds (Stripe ids are `[A-Za-z0-9_]`).
fn segment(id: &str) -> Result<&str, PaymentError> {
    if !id.is_empty()
        && id.len() <= 255
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(id)
    } else {
        Err(PaymentError::Refused(format!("not a Stripe id: {id:?}")))
    }
}

#[async_trait]
impl Payments for Stripe {
    async fn create_customer(
        &self,
        tenant: &TenantId,
        email: &str,
        name: &str,
        idempotency_key: &str,
    ) -> Result<String, PaymentError> {
        let form = [
            pair("email", email),
            pair("name", name),
            pair("metadata[tenant_id]", tenant.as_str()),
        ];
        let customer = self.post("/v1/customers", &form, idempotency_key).await?;
        text(&customer, "id")
    }

    async fn checkout(&self, r: &CheckoutRequest) -> Result<String, PaymentError> {
        let mut form = vec![
            pair("mode", "subscription"),
            pair("customer", &r.customer),
            pair("client_reference_id", r.tenant.as_str()),
            pair("line_items[0][price]", &r.price),
            pair("line_items[0][quantity]", "1"),
            pair("success_url", &r.success_url),
            pair("cancel_url", &r.cancel_url),
        ];
        if r.trial_days > 0 {
            form.push(pair("subscription_data[trial_period_days]", r.trial_days.to_string()));
        }
        for (k, v) in &r.metadata {
            form.push(pair(format!("metadata[{k}]"), v));
            form.push(pair(format!("subscription_data[metadata][{k}]"), v));
        }
        if let Some((account, percent)) = &r.transfer {
            form.push(pair("subscription_data[application_fee_percent]", percent.to_string()));
            form.push(pair("subscription_data[transfer_data][destination]", account));
        }
        let session = self.post("/v1/checkout/sessions", &form, &r.idempotency_key).await?;
        text(&session, "url")
    }

    async fn portal(&self, customer: &str, return_url: &str) -> Result<String, PaymentError> {
        let form = [pair("customer", customer), pair("return_url", return_url)];
        let key = format!("parla-portal-{}", uuid_like());
        let session = self.post("/v1/billing_portal/sessions", &form, &key).await?;
        text(&session, "url")
    }

    async fn subscription(&self, id: &str) -> Result<ProviderSubscription, PaymentError> {
        let path = format!("/v1/subscriptions/{}", segment(id)?);
        let found = self.send(reqwest::Method::GET, &path, &[], None).await?;
        read_subscription(&found)
    }

    async fn cancel(&self, id: &str, immediately: bool) -> Result<(), PaymentError> {
        let path = format!("/v1/subscriptions/{}", segment(id)?);
        let key = format!("parla-cancel-{id}-{immediately}");
        if immediately {
            self.send(reqwest::Method::DELETE, &path, &[], Some(&key)).await?;
        } else {
            self.post(&path, &[pair("cancel_at_period_end", "true")], &key).await?;
        }
        Ok(())
    }

    fn verify(
        &self,
        payload: &[u8],
        signature: &str,
        now: i64,
    ) -> Result<ProviderEvent, PaymentError> {
        verify(&self.secrets, payload, signature, now, self.tolerance_secs)?;
        let text = std::str::from_utf8(payload)
            .map_err(|_| PaymentError::BadPayload("not UTF-8".into()))?;
        self.read_event(text)
    }

    fn read_event(&self, payload: &str) -> Result<ProviderEvent, PaymentError> {
        read_event(payload)
    }

    async fn create_price(
        &self,
        product: &str,
        amount: u64,
        currency: &str,
        interval: &str,
        idempotency_key: &str,
    ) -> Result<String, PaymentError> {
        let form = [
            pair("currency", currency),
            pair("unit_amount", amount.to_string()),
            pair("recurring[interval]", interval),
            pair("product_data[name]", product),
        ];
        let price = self.post("/v1/prices", &form, idempotency_key).await?;
        text(&price, "id")
    }

    async fn create_connect_account(
        &self,
        tenant: &TenantId,
        email: &str,
        idempotency_key: &str,
    ) -> Result<String, PaymentError> {
        let form = [
            pair("type", "express"),
            pair("email", email),
            pair("metadata[tenant_id]", tenant.as_str()),
            pair("capabilities[card_payments][requested]", "true"),
            pair("capabilities[transfers][requested]", "true"),
        ];
        let account = self.post("/v1/accounts", &form, idempotency_key).await?;
        text(&account, "id")
    }

    async fn account_link(
        &self,
        account: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<String, PaymentError> {
        let form = [
            pair("account", segment(account)?),
            pair("refresh_url", refresh_url),
            pair("return_url", return_url),
            pair("type", "account_onboarding"),
        ];
        let key = format!("parla-account-link-{}", uuid_like());
        let link = self.post("/v1/account_links", &form, &key).await?;
        text(&link, "url")
    }

    async fn account(&self, id: &str) -> Result<(bool, bool, bool), PaymentError> {
        let path = format!("/v1/accounts/{}", segment(id)?);
        let found = self.send(reqwest::Method::GET, &path, &[], None).await?;
        let flag = |name: &str| found[name].as_bool().unwrap_or(false);
        Ok((flag("charges_enabled"), flag("payouts_enabled"), flag("details_submitted")))
    }

    async fn report_usage(&self, report: &MeterReport) -> Result<(), PaymentError> {
        let form = [
            pair("event_name", &report.event_name),
            pair("payload[stripe_customer_id]", &report.customer),
            pair("payload[value]", report.value.to_string()),
            pair("identifier", &report.identifier),
        ];
        // The identifier is the key too: a resent report is the same request (and the same
        // meter event, which Stripe counts once). No `timestamp`: Stripe's default (when it
        // receives the report) keeps a resent report identical, and a report made a month
        // later than the usage (after an outage) is still accepted.
        self.post("/v1/billing/meter_events", &form, &report.identifier).await?;
        Ok(())
    }
}

/// A random-enough key for a request that is not retried by the caller (the client's own
/// retry reuses it).
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}-{:x}", std::process::id())
}

/// Checks a `Stripe-Signature` header over `payload` at `now` (Unix seconds).
pub fn verify(
    secrets: &[String],
    payload: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), PaymentError> {
    if secrets.is_empty() {
        return Err(PaymentError::NotConfigured);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => signatures.extend(hex(sig)),
            _ => {}
        }
    }
    let t = timestamp.ok_or(PaymentError::BadSignature("no timestamp"))?;
    if signatures.is_empty() {
        return Err(PaymentError::BadSignature("no v1 signature"));
    }
    if now.saturating_sub(t) > tolerance_secs || t.saturating_sub(now) > tolerance_secs {
        return Err(PaymentError::BadSignature("the timestamp is outside the tolerance"));
    }
    for secret in secrets {
        for sig in &signatures {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { continue };
            mac.update(t.to_string().as_bytes());
            mac.update(b".");
            mac.update(payload);
            if mac.verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(PaymentError::BadSignature("no signature matches"))
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn text(v: &Value, field: &str) -> Result<String, PaymentError> {
    v[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| PaymentError::Unavailable(format!("stripe: no `{field}` in the answer")))
}

/// An id that may be expanded into its object.
fn id_of(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned).or_else(|| v["id"].as_str().map(str::to_owned))
}

fn ms(v: &Value) -> Option<i64> {
    v.as_i64().map(|s| s.saturating_mul(1000))
}

/// A subscription object (API version [`API_VERSION`]: periods on its items).
pub fn read_subscription(v: &Value) -> Result<ProviderSubscription, PaymentError> {
    let bad = |what: &str| PaymentError::BadPayload(format!("subscription: {what}"));
    let status = v["status"].as_str().ok_or_else(|| bad("no status"))?;
    let item = &v["items"]["data"][0];
    let metadata: BTreeMap<String, String> = v["metadata"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned()))).collect())
        .unwrap_or_default();
    Ok(ProviderSubscription {
        id: v["id"].as_str().ok_or_else(|| bad("no id"))?.to_owned(),
        customer: id_of(&v["customer"]).unwrap_or_default(),
        status: SubscriptionStatus::parse(status).ok_or_else(|| bad("unknown status"))?,
        price: id_of(&item["price"]),
        metadata,
        current_period_start: ms(&item["current_period_start"]),
        current_period_end: ms(&item["current_period_end"]),
        trial_end: ms(&v["trial_end"]),
        cancel_at_period_end: v["cancel_at_period_end"].as_bool().unwrap_or(false),
        canceled_at: ms(&v["canceled_at"]),
    })
}

/// An event's body.
pub fn read_event(payload: &str) -> Result<ProviderEvent, PaymentError> {
    let v: Value = serde_json::from_str(payload)
        .map_err(|e| PaymentError::BadPayload(format!("not JSON: {e}")))?;
    let bad = |what: &str| PaymentError::BadPayload(format!("event: {what}"));
    let id = v["id"].as_str().filter(|id| id.starts_with("evt")).ok_or_else(|| bad("no id"))?;
    let kind = v["type"].as_str().ok_or_else(|| bad("no type"))?;
    let created = v["created"].as_i64().ok_or_else(|| bad("no created"))?;
    let object = &v["data"]["object"];
    let what = if kind.starts_with("customer.subscription.") {
        EventObject::Subscription(read_subscription(object)?)
    } else if kind.starts_with("invoice.") {
        let subscription = id_of(&object["subscription"])
            .or_else(|| id_of(&object["parent"]["subscription_details"]["subscription"]));
        EventObject::Invoice {
            subscription,
            customer: id_of(&object["customer"]).unwrap_or_default(),
        }
    } else if kind == "checkout.session.completed" {
        EventObject::Checkout {
            reference: object["client_reference_id"].as_str().map(str::to_owned),
            customer: id_of(&object["customer"]),
            subscription: id_of(&object["subscription"]),
        }
    } else if kind == "account.updated" {
        EventObject::Account {
            id: object["id"].as_str().unwrap_or_default().to_owned(),
            tenant: object["metadata"]["tenant_id"].as_str().map(str::to_owned),
            charges_enabled: object["charges_enabled"].as_bool().unwrap_or(false),
            payouts_enabled: object["payouts_enabled"].as_bool().unwrap_or(false),
            details_submitted: object["details_submitted"].as_bool().unwrap_or(false),
        }
    } else {
        EventObject::Other
    };
    Ok(ProviderEvent { id: id.to_owned(), kind: kind.to_owned(), created, what })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, payload: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("{t}.{payload}").as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn signatures_are_checked_under_every_secret_and_within_the_tolerance() {
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        let body = r#"{"id":"evt_1"}"#;
        let good = format!("t=1000,v1={}", sign("whsec_new", 1000, body));
        assert!(verify(&secrets, body.as_bytes(), &good, 1100, 300).is_ok());
        let two = format!("t=1000,v1={},v1={}", "00".repeat(32), sign("whsec_old", 1000, body));
        assert!(verify(&secrets, body.as_bytes(), &two, 1000, 300).is_ok(), "any v1 matches");
        let forged = format!("t=1000,v1={}", sign("whsec_other", 1000, body));
        assert!(verify(&secrets, body.as_bytes(), &forged, 1000, 300).is_err());
        assert!(verify(&secrets, b"{\"id\":\"evt_2\"}", &good, 1000, 300).is_err(), "other body");
        assert!(verify(&secrets, body.as_bytes(), &good, 1301, 300).is_err(), "too old");
        assert!(verify(&secrets, body.as_bytes(), "t=1000", 1000, 300).is_err());
        assert!(verify(&secrets, body.as_bytes(), "v1=zz,t=x", 1000, 300).is_err());
        assert!(verify(&[], body.as_bytes(), &good, 1000, 300).is_err(), "no secret, no event");
    }
}
