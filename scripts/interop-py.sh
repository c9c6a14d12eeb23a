#!/usr/bin/env bash
# Cross-language interop: a py-libp2p 0.8.1 peer (tests/interop/py_peer.py) against swarmnode processes on
# 127.0.0.1, with mDNS off: connections over Noise and TLS both ways, ping, identify, gossipsub envelopes both ways, a
# raw payload rejected, Kademlia lookups through a third node both ways; membership both ways (the py peer's signed
# member record alive on two nodes, then suspect and failed when it goes quiet, alive again; swarmnode's records
# opened in Python; a forged record refused); state deltas both ways and a forged one refused; then examples/python/swarm_client.py against a live node. Prints the matrix; exits non-zero on any failure that is not listed as expected.
# Usage: scripts/interop-py.sh   (installs py-libp2p from PyPI into target/interop-venv on first use; builds
# target/debug/swarmnode)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/interop-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import libp2p, cbor2' 2>/dev/null; then
    # A fresh Debian machine may lack Python's venv module (or Python): install them from Debian's packages.
    if ! python3 -m venv --help >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq python3 python3-venv
    fi
    rm -rf "$venv"
    python3 -m venv "$venv"
    # py-libp2p ships wheels for its native dependencies on x86_64 Linux; if pip has to build one from source, the
    # C toolchain and GMP headers are what it needs.
    if ! "$venv/bin/pip" install --quiet libp2p==0.8.1 cbor2; then
        apt-get update -qq && apt-get install -y -qq build-essential libgmp-dev python3-dev
        "$venv/bin/pip" install --quiet libp2p==0.8.1 cbor2
    fi
fi
cargo build --quiet
# -B: no __pycache__ beside the harness and its helper module in the work tree.
exec "$venv/bin/python" -u -B tests/interop/py_peer.py --swarmnode target/debug/swarmnode \
    --example examples/python/swarm_client.py 2> target/interop-py.log
