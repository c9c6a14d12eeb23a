"""Scenario suite for the docker-compose swarm (run through scripts/compose-test.sh).

Brings up docker-compose.yml under its own project name with short timings (heartbeat 1 s, peer timeout 3 s, dial
timeout 2 s), plays
the scenarios of the README's "Run a local swarm" section against it, prints a table of scenario / expectation /
measured time / pass, and always tears the swarm down (`down -v`). Every wait is bounded; the exit status is non-zero
on any failure. Only the standard library is used.
"""

import json
import os
import shutil
import subprocess
import sys
import time

PROJECT = os.environ.get("COMPOSE_PROJECT", "swarmnode-test")
LAN_A = ["node-a1", "node-a2", "node-a3"]
LAN_B = ["node-b1", "node-b2"]
ALL = ["bootstrap"] + LAN_A + LAN_B
DEADLINE = 60.0
TIMINGS = {
    "SWARMNODE_HEARTBEAT": "1s",
    "SWARMNODE_PEER_TIMEOUT": "3s",
    "SWARMNODE_RECONNECT_BACKOFF": "500ms",
    "SWARMNODE_RECONNECT_ATTEMPTS": "3",
    "SWARMNODE_RECONNECT_BACKOFF_MAX": "5s",
    "SWARMNODE_DIAL_TIMEOUT": "2s",
}


def compose_command():
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    sys.exit("neither `docker compose` nor `docker-compose` is available")


COMPOSE = compose_command() + ["-p", PROJECT]
ENV = dict(os.environ, **TIMINGS)


def run(args, check=True):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def compose(*args, check=True):
    return run(COMPOSE + list(args), check=check)


def container(service):
    return compose("ps", "-q", service).strip()


def api(service, *args):
    """`swarmnode ARGS --json` inside the service's container, parsed."""
    out = run(["docker", "exec", container(service), "swarmnode", *args, "--json"])
    return json.loads(out)


def peer_id(service):
    return api(service, "status")["peer_id"]


def events(service, since=0):
    """The service's JSON event lines (its stdout), optionally only those at or after `since` (unix ms)."""
    lines = []
    for line in run(["docker", "logs", container(service)]).splitlines():
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("ts", 0) >= since:
                lines.append(event)
    return lines


def now_ms():
    return int(time.time() * 1000)


def wait_until(what, check, deadline=DEADLINE):
    start = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - start
        except (RuntimeError, json.JSONDecodeError, KeyError, TimeoutError):
            pass  # Not yet: a node still starting, or an inner wait that ran out; try again until the deadline.
        if time.monotonic() - start > deadline:
            raise TimeoutError(f"not within {deadline:.0f} s: {what}")
        time.sleep(0.25)


def states_of(observer, peer, since):
    return [(e["from"], e["to"]) for e in events(observer, since) if e["event"] == "peer_state" and e["peer"] == peer]


def delivered(service, text, since):
    return sum(1 for e in events(service, since) if e["event"] == "message" and e.get("data") == text)


RESULTS = []


def scenario(name, expectation):
    def wrap(body):
        start = time.monotonic()
        try:
            measured = body()
            ok = True
        except Exception as error:  # Every failure is reported in the table, and the suite goes on.
            measured = f"FAILED: {error}"
            ok = False
        RESULTS.append((name, expectation, measured, ok, time.monotonic() - start))
        print(f"{'pass' if ok else 'FAIL'}  {name}: {measured}", flush=True)
        return body

    return wrap


def publish_everywhere(origin, text, receivers, deadline=DEADLINE):
    since = now_ms()
    api(origin, "publish", "swarmnode", text)
    took = wait_until(
        f"{text!r} from {origin} on {', '.join(receivers)}",
        lambda: all(delivered(r, text, since) >= 1 for r in receivers),
        deadline,
    )
    duplicates = [r for r in receivers if delivered(r, text, since) > 1]
    if duplicates:
        raise AssertionError(f"delivered more than once on {duplicates}")
    return took


def main():
    ids = {}
    try:
        compose("down", "-v", check=False)
        started = time.monotonic()
        compose("up", "-d")

        @scenario("discovery", "lan-a nodes find each other by mDNS; every node is connected to the swarm")
        def _():
            wait_until("every API up", lambda: all(peer_id(s) for s in ALL))
            ids.update({s: peer_id(s) for s in ALL})

            def lan_a_by_mdns():
                for s in LAN_A:
                    by_mdns = {p["peer"] for p in api(s, "peers") if "mdns" in p["sources"]}
                    if not all(ids[o] in by_mdns for o in LAN_A if o != s):
                        return False
                return True

            def lan_b_joined():
                for s in LAN_B:
                    active = {p["peer"] for p in api(s, "peers") if p["state"] == "active"}
                    if ids["bootstrap"] not in active or not all(ids[o] in active for o in LAN_B if o != s):
                        return False
                return True

            wait_until("lan-a mDNS discovery", lan_a_by_mdns)
            wait_until("lan-b joined through bootstrap", lan_b_joined)
            return f"{time.monotonic() - started:.1f} s from `up`"

        @scenario("broadcast", "a message from node-a1 reaches every node once, and one from node-b2 likewise")
        def _():
            there = publish_everywhere("node-a1", "from a1", [s for s in ALL if s != "node-a1"])
            back = publish_everywhere("node-b2", "from b2", [s for s in ALL if s != "node-b2"])
            return f"a1→all {there:.1f} s, b2→all {back:.1f} s"

        @scenario("kill", "docker kill node-a2: disconnected → reconnecting → removed; docker start: active again")
        def _():
            since = now_ms()
            run(["docker", "kill", container("node-a2")])
            observers = ["node-a1", "node-a3"]
            removed = wait_until(
                "node-a2 removed on node-a1 and node-a3",
                lambda: all(("reconnecting", "removed") in states_of(o, ids["node-a2"], since) for o in observers),
            )
            for o in observers:
                seen = states_of(o, ids["node-a2"], since)
                if seen[:2] != [("active", "disconnected"), ("disconnected", "reconnecting")]:
                    raise AssertionError(f"{o} saw {seen}")
            since = now_ms()
            run(["docker", "start", container("node-a2")])
            wait_until("node-a2's API", lambda: peer_id("node-a2"))
            if peer_id("node-a2") != ids["node-a2"]:
                raise AssertionError("node-a2 came back with another peer id")
            # An observer that removed it sees removed → new → active; one still redialling, reconnecting → active.
            back = wait_until(
                "node-a2 active again on node-a1, node-a3 and bootstrap",
                lambda: all(
                    any(to == "active" for _, to in states_of(o, ids["node-a2"], since))
                    for o in observers + ["bootstrap"]
                ),
            )
            return f"removed after {removed:.1f} s, active again {back:.1f} s after start"

        @scenario("pause", "docker pause node-b1: disconnected after the 3 s timeout; unpause: active again")
        def _():
            since = now_ms()
            run(["docker", "pause", container("node-b1")])
            try:
                detected = wait_until(
                    "node-b1 timed out on node-b2",
                    lambda: ("active", "disconnected") in states_of("node-b2", ids["node-b1"], since),
                )
            finally:
                # Before the unpause: the reconnection can follow within milliseconds.
                since = now_ms()
                run(["docker", "unpause", container("node-b1")])
            back = wait_until(
                "node-b1 active again on node-b2",
                lambda: any(to == "active" for _, to in states_of("node-b2", ids["node-b1"], since)),
            )
            return f"disconnected after {detected:.1f} s, active {back:.1f} s after unpause"

        @scenario("partition", "bootstrap off lan-b: lan-a messages stop reaching lan-b; back on: they flow again")
        def _():
            network = f"{PROJECT}_lan-b"
            since = now_ms()
            run(["docker", "network", "disconnect", network, container("bootstrap")])
            try:
                seen = wait_until(
                    "the loss visible in node-b1's peer states",
                    lambda: ("active", "disconnected") in states_of("node-b1", ids["bootstrap"], since),
                )
                # Once the message is everywhere it can reach (bootstrap included, the only way to lan-b), it can
                # no longer cross: lan-b must not have it.
                publish_everywhere("node-a1", "during partition", ["bootstrap"] + [a for a in LAN_A if a != "node-a1"])
                if any(delivered(b, "during partition", since) for b in LAN_B):
                    raise AssertionError("a lan-a message crossed the partition")
            finally:
                run(["docker", "network", "connect", "--alias", "bootstrap", network, container("bootstrap")])
            healed = wait_until(
                "new lan-a messages reach lan-b",
                lambda: publish_everywhere("node-a1", f"after partition {now_ms()}", LAN_B, 10) >= 0,
                deadline=90,
            )
            return f"loss seen after {seen:.1f} s, flowing again {healed:.1f} s after reconnect"

        @scenario("graceful stop", "docker stop node-a3: the others report left, no reconnect attempts")
        def _():
            since = now_ms()
            run(["docker", "stop", container("node-a3")])
            observers = ["node-a1", "node-a2", "bootstrap"]
            took = wait_until(
                "node-a3 left everywhere",
                lambda: all(("active", "left") in states_of(o, ids["node-a3"], since) for o in observers),
            )
            # A redial would be scheduled the moment the connection closes: once each observer reports the close,
            # any reconnect attempt is already in its log.
            wait_until(
                "node-a3's connections closed everywhere",
                lambda: all(
                    any(e["event"] == "disconnected" and e["peer"] == ids["node-a3"] for e in events(o, since))
                    for o in observers
                ),
            )
            for o in observers:
                seen = states_of(o, ids["node-a3"], since)
                if any(to == "reconnecting" for _, to in seen):
                    raise AssertionError(f"{o} redialled a node that left: {seen}")
            run(["docker", "start", container("node-a3")])
            return f"left everywhere after {took:.1f} s"

        @scenario("rolling restart", "each node restarted in turn; a message after each reaches every running node")
        def _():
            wait_until("node-a3 back", lambda: peer_id("node-a3"))
            slowest = 0.0
            for service in ALL:
                run(["docker", "restart", "--time", "5", container(service)])
                wait_until(f"{service}'s API", lambda: peer_id(service))
                origin = "node-a1" if service != "node-a1" else "node-b1"
                receivers = [s for s in ALL if s != origin]
                took = wait_until(
                    f"a message after restarting {service}",
                    lambda: publish_everywhere(origin, f"after restarting {service} {now_ms()}", receivers, 10) >= 0,
                    deadline=90,
                )
                slowest = max(slowest, took)
            return f"swarm whole again within {slowest:.1f} s of each restart"

    finally:
        compose("down", "-v", check=False)

    width = max(len(r[0]) for r in RESULTS)
    print()
    print(f"{'scenario':<{width}}  pass  measured")
    for name, expectation, measured, ok, _ in RESULTS:
        print(f"{name:<{width}}  {'yes' if ok else 'NO ':<4}  {measured}")
        print(f"{'':<{width}}        expected: {expectation}")
    return 0 if RESULTS and all(r[3] for r in RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
