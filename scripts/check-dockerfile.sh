#!/usr/bin/env bash
# Checks the Dockerfile and .dockerignore statically (no Docker engine needed; none runs on the
# machines this project is developed on, so the image is not built here): stages, base images,
# the cargo build and its dependency layer, the build context, non-root numeric USER, data dir,
# EXPOSE/CMD/ENTRYPOINT/HEALTHCHECK, no secrets, the embedding model. One `ok - docker: …` /
# `not ok - docker: …` line per check; exits non-zero if any failed.
#
# Usage: scripts/check-dockerfile.sh [PATH_TO_PARLA]
# Given a built parla (or PARLA_BIN), it also checks CMD's flags against `parla serve --help`,
# the binary's shared libraries, and runs the HEALTHCHECK's command against it on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-${PARLA_BIN:-}}"
exec python3 scripts/deploy/check_dockerfile.py --repo . ${bin:+--bin "$bin"}
