#!/usr/bin/env python3
"""A swarmnode control-API client in plain Python (standard library only).

    swarm_client.py [--api URL] [--token-file FILE] status
    swarm_client.py ... peers
    swarm_client.py ... publish TOPIC TEXT [--id ID]
    swarm_client.py ... follow [--types message,peer_state] [--topic T] [--count N]

`follow` reads the Server-Sent Events stream (`GET /v1/events`) and prints one JSON event per line. The API is
described by the node itself at `/v1/openapi.json`; scripts/interop-py.sh runs this file against a live node.
"""

import argparse
import json
import sys
import urllib.error
import urllib.parse
import urllib.request


class Client:
    def __init__(self, api: str, token: str | None):
        self.api = api.rstrip("/")
        self.headers = {"accept": "application/json"}
        if token:
            self.headers["authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, body: dict | None = None, timeout: float | None = 30):
        data = None
        headers = dict(self.headers)
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(self.api + path, data=data, headers=headers, method=method)
        try:
            return urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as error:
            # Every API error is {"error": {"code", "message"}}.
            detail = json.load(error).get("error", {})
            raise SystemExit(f"error: {error.code} {detail.get('code')}: {detail.get('message')}") from None
        except urllib.error.URLError as error:
            raise SystemExit(f"error: cannot reach {self.api}: {error.reason}") from None

    def json(self, method: str, path: str, body: dict | None = None):
        with self.request(method, path, body) as response:
            return json.load(response)

    def events(self, types: str | None, topic: str | None):
        """Yields each event of the SSE stream as a dict."""
        query = {k: v for k, v in (("types", types), ("topic", topic)) if v}
        path = "/v1/events" + ("?" + urllib.parse.urlencode(query) if query else "")
        with self.request("GET", path, timeout=None) as stream:
            data = []
            for raw in stream:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:  # a blank line ends an event
                    yield json.loads("\n".join(data))
                    data = []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--api", default="http://127.0.0.1:5100", help="the node's API (default: %(default)s)")
    parser.add_argument("--token-file", help="file with the API's bearer token, when it requires one")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("status", help="the node: peer id, addresses, topics")
    commands.add_parser("peers", help="the peer table")
    publish = commands.add_parser("publish", help="publish a text message")
    publish.add_argument("topic")
    publish.add_argument("text")
    publish.add_argument("--id", help="idempotency key: sent once within the node's dedup window")
    follow = commands.add_parser("follow", help="print events as JSON lines")
    follow.add_argument("--types", help="comma-separated event names, e.g. message,peer_state")
    follow.add_argument("--topic", help="only events about this topic")
    follow.add_argument("--count", type=int, help="stop after this many events")
    args = parser.parse_args()

    token = None
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as file:
            token = file.read().strip()
    client = Client(args.api, token)

    if args.command == "status":
        print(json.dumps(client.json("GET", "/v1/node"), indent=2))
    elif args.command == "peers":
        for peer in client.json("GET", "/v1/peers"):
            rtt = f"{peer['rtt_ms']:.1f} ms" if peer["rtt_ms"] is not None else "-"
            print(f"{peer['peer']}  {peer['state']:12}  {rtt:>10}  {peer.get('agent_version') or '-'}")
    elif args.command == "publish":
        body = {"topic": args.topic, "data": args.text}
        if args.id:
            body["id"] = args.id
        print(json.dumps(client.json("POST", "/v1/publish", body)))
    elif args.command == "follow":
        for seen, event in enumerate(client.events(args.types, args.topic), start=1):
            print(json.dumps(event), flush=True)
            if args.count and seen >= args.count:
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
