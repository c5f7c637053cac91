"""Stripe webhook throughput: N signed subscription events (Stripe's own library signs them)
posted by C threads to a running Parla; reports events accepted per second (each answered 200
only once stored durably) and applied per second (until every subscription is readable).

Usage: python bench-webhooks.py BASE_URL SECRET N C
"""
import json, sys, threading, time, urllib.request

import stripe

base, secret, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])


def call(method, path, body=None, token=None, headers=None):
    req = urllib.request.Request(base + path, method=method, data=body)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    with urllib.request.urlopen(req) as r:
        return r.status, json.loads(r.read() or b"null")


email = f"bench{time.time_ns()}@webhooks.example.com"
account = {"email": email, "password": "a long bench password 1", "name": "Bench"}
call("POST", "/api/auth/register", json.dumps(account).encode())
_, tokens = call("POST", "/api/auth/login", json.dumps({"email": email, "password": account["password"]}).encode())
token = tokens["access_token"]
_, me = call("GET", "/api/auth/me", token=token)
tenant = me["tenant_id"]
now = int(time.time())
events = []
for i in range(n):
    payload = json.dumps({
        "id": f"evt_bench_{now}_{i}", "object": "event", "type": "customer.subscription.updated",
        "created": now - 60,
        "data": {"object": {
            "id": f"sub_bench_{now}_{i}", "object": "subscription", "customer": "cus_bench",
            "status": "active", "cancel_at_period_end": False,
            "metadata": {"tenant_id": tenant, "kind": "workspace", "plan": "pro"},
            "items": {"object": "list", "data": [{"id": "si", "price": {"id": "price_none"},
                "current_period_start": now, "current_period_end": now + 2592000}]},
        }},
    })
    events.append((payload, stripe.WebhookSignature.generate_signature_header(payload, secret)))

errors = []
def worker(chunk):
    for payload, sig in chunk:
        try:
            status, _ = call("POST", "/v1/billing/stripe/webhook", payload.encode(), headers={"Stripe-Signature": sig})
            if status != 200:
                errors.append(status)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

start = time.perf_counter()
threads = [threading.Thread(target=worker, args=(events[i::c],)) for i in range(c)]
for t in threads:
    t.start()
for t in threads:
    t.join()
accepted = time.perf_counter() - start
while True:
    _, subs = call("GET", "/api/subscriptions", token=token)
    if len(subs["data"]) >= n:
        break
    time.sleep(0.05)
applied = time.perf_counter() - start
print(json.dumps({
    "events": n, "threads": c, "errors": len(errors),
    "accepted_per_s": round(n / accepted, 1), "applied_per_s": round(n / applied, 1),
    "accepted_s": round(accepted, 3), "applied_s": round(applied, 3),
}))
sys.exit(1 if errors else 0)
