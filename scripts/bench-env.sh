# Sourced by the bench scripts that start `parla serve` themselves: every simulated visitor
# comes from loopback, so the per-address limits (gateway.*_per_ip*) would count them all as one
# client; several processes share the host, so each takes its own operations listener (its
# address is printed as "parla: /readyz and /metrics on http://…").
export PARLA__SERVER__OPS_LISTEN=127.0.0.1:0
export PARLA__GATEWAY__MAX_SOCKETS_PER_IP=10000000
export PARLA__GATEWAY__HELLOS_PER_IP_PER_MINUTE=10000000
export PARLA__GATEWAY__HELLO_BURST_PER_IP=10000000
export PARLA__GATEWAY__NEW_CONVERSATIONS_PER_BOT_PER_MINUTE=10000000
export PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_BOT=10000000
export PARLA__GATEWAY__NEW_CONVERSATIONS_PER_IP_PER_MINUTE=10000000
export PARLA__GATEWAY__NEW_CONVERSATION_BURST_PER_IP=10000000
