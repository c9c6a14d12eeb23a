#!/usr/bin/env bash
# Scenario suite for the docker-compose swarm: discovery, members, routing, broadcast, kill, member kill, pause,
# partition, member partition, state partition, state restart, graceful stop, rolling restart. Builds the image first unless SKIP_IMAGE=1. Prints a table; exits non-zero on any failure; always tears
# the swarm down. Usage: scripts/compose-test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${SKIP_IMAGE:-0}" != 1 ]; then
    scripts/docker-image.sh
fi
exec python3 scripts/compose_test.py
