"""Stripe test mode, driven with Stripe's own library for billing_stripe's opt-in test.

Usage: python stripe_test_mode.py <command> '<json args>'; prints one JSON object.
The key comes from PARLA_TEST_STRIPE_KEY (a test-mode secret key, sk_test_...);
STRIPE_API_BASE points the library elsewhere (stripe-mock, to check the calls are valid).

  prices    {run}              a product with a monthly price, a meter, a metered price on it
  subscribe {tenant, failing_tenant, price, metered}
                               a customer paying with a card that works, subscribed to both
                               prices with Parla's marks for `tenant`; a test clock with a
                               customer whose card fails, subscribed to `price` with a one-day
                               trial for `failing_tenant`
  status    {subscription}     the subscription's status
  advance   {clock, days}      moves the test clock on and waits until Stripe has caught up
  pay       {customer, subscription}
                               gives the customer a card that works and pays the open invoices
  usage     {meter, customer, start}
                               the meter's total for the customer since `start` (Unix seconds)
  cleanup   {clock, meter, subscription}
                               cancels the subscription, deletes the clock (its customer and
                               subscription) and deactivates the meter
"""

import json
import os
import sys
import time

import stripe

stripe.api_key = os.environ["PARLA_TEST_STRIPE_KEY"]
if os.environ.get("STRIPE_API_BASE"):
    stripe.api_base = os.environ["STRIPE_API_BASE"]


def prices(a):
    price = stripe.Price.create(
        currency="eur",
        unit_amount=2900,
        recurring={"interval": "month"},
        product_data={"name": f"Parla Pro (test {a['run']})"},
    )
    event_name = f"parla_conversations_{a['run']}"
    meter = stripe.billing.Meter.create(
        display_name=f"Parla conversations (test {a['run']})",
        event_name=event_name,
        default_aggregation={"formula": "sum"},
    )
    metered = stripe.Price.create(
        currency="eur",
        unit_amount=5,
        recurring={"interval": "month", "usage_type": "metered", "meter": meter.id},
        product_data={"name": f"Parla conversations (test {a['run']})"},
    )
    return {"price": price.id, "metered": metered.id, "meter": meter.id, "event_name": event_name}


def subscribe(a):
    def marks(tenant):
        return {"tenant_id": tenant, "kind": "workspace", "plan": "pro"}

    paying = stripe.Customer.create(
        email="paying@parla.example.com",
        payment_method="pm_card_visa",
        invoice_settings={"default_payment_method": "pm_card_visa"},
    )
    subscription = stripe.Subscription.create(
        customer=paying.id,
        items=[{"price": a["price"]}, {"price": a["metered"]}],
        metadata=marks(a["tenant"]),
    )
    clock = stripe.test_helpers.TestClock.create(frozen_time=int(time.time()))
    failing = stripe.Customer.create(
        email="failing@parla.example.com",
        test_clock=clock.id,
        payment_method="pm_card_chargeCustomerFail",
        invoice_settings={"default_payment_method": "pm_card_chargeCustomerFail"},
    )
    trial = stripe.Subscription.create(
        customer=failing.id,
        items=[{"price": a["price"]}],
        trial_period_days=1,
        metadata=marks(a["failing_tenant"]),
    )
    return {
        "clock": clock.id,
        "customer": paying.id,
        "subscription": subscription.id,
        "failing_customer": failing.id,
        "failing_subscription": trial.id,
    }


def status(a):
    return {"status": stripe.Subscription.retrieve(a["subscription"]).status}


def advance(a):
    clock = stripe.test_helpers.TestClock.retrieve(a["clock"])
    stripe.test_helpers.TestClock.advance(
        a["clock"], frozen_time=clock.frozen_time + a["days"] * 86400
    )
    for _ in range(120):
        if stripe.test_helpers.TestClock.retrieve(a["clock"]).status == "ready":
            break
        time.sleep(1)
    return {"ready": True}


def pay(a):
    pm = stripe.PaymentMethod.attach("pm_card_visa", customer=a["customer"])
    stripe.Customer.modify(a["customer"], invoice_settings={"default_payment_method": pm.id})
    for invoice in stripe.Invoice.list(subscription=a["subscription"], status="open"):
        stripe.Invoice.pay(invoice.id, payment_method=pm.id)
    return status(a)


def usage(a):
    start = a["start"] // 60 * 60
    end = (int(time.time()) // 60 + 2) * 60
    summaries = stripe.billing.Meter.list_event_summaries(
        a["meter"], customer=a["customer"], start_time=start, end_time=end
    )
    return {"total": sum(s.aggregated_value for s in summaries.auto_paging_iter())}


def cleanup(a):
    stripe.Subscription.cancel(a["subscription"])
    stripe.test_helpers.TestClock.delete(a["clock"])
    stripe.billing.Meter.deactivate(a["meter"])
    return {"done": True}


if __name__ == "__main__":
    command, args = sys.argv[1], json.loads(sys.argv[2])
    print(json.dumps(globals()[command](args)))
