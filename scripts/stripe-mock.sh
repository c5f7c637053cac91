#!/usr/bin/env bash
# Installs Stripe's own mock server (stripe-mock, a Go module: it validates every request
# against Stripe's OpenAPI spec) outside the clone, once per version, and prints its path.
# The billing tests start it on ports of their own.
set -euo pipefail
version=v0.203.0
bin="${PARLA_TOOLS:-/var/tmp/parla-tools}/bin"
if [ ! -x "$bin/stripe-mock" ] || [ "$(cat "$bin/.stripe-mock.version" 2>/dev/null)" != "$version" ]; then
  command -v go >/dev/null || { echo "stripe-mock: go is missing" >&2; exit 1; }
  mkdir -p "$bin"
  GOBIN="$bin" go install "github.com/stripe/stripe-mock@$version" >&2
  echo "$version" >"$bin/.stripe-mock.version"
fi
echo "$bin/stripe-mock"
