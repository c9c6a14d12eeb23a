//! The OpenAPI 3 description of the API, served at `GET /v1/openapi.json`. Written by hand next to the route table
//! (`super::route_table`); a test checks that the two list the same routes, and that every documented route answers.

use serde_json::{Value, json};

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn ok(schema: Value) -> Value {
    json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
}

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn path_parameter(name: &str, description: &str, schema: Value) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema})
}

/// A topic: 1 to 256 bytes of UTF-8 without control characters. JSON Schema counts characters, not bytes, so the
/// schema promises the 64 characters that always fit (a character is at most 4 bytes); longer ASCII names work too.
fn topic_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\u0000-\\u001F\\u007F-\\u009F]+$",
        "description": "1-256 bytes of UTF-8, no control characters"})
}

/// The document.
pub fn document() -> Value {
    let bad_request = error_response("bad input");
    let unauthorized = error_response("missing or wrong bearer token (only when the API requires one)");
    let stopped = error_response("the node is not ready or has stopped");
    let unsupported_media_type = error_response("the body is not sent as application/json");
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "swarmnode control API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Local HTTP/JSON control of a running swarmnode. Errors are {\"error\": {\"code\", \"message\"}}."
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object", "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"],
                        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}
                },
                "Node": {
                    "type": "object",
                    "required": ["peer_id", "agent", "listen_addresses", "external_addresses", "protocols", "uptime_ms",
                        "connected_peers", "routing_table", "topics", "rejected_messages", "duplicate_ids"],
                    "properties": {
                        "peer_id": {"type": "string"}, "agent": {"type": "string"},
                        "listen_addresses": {"type": "array", "items": {"type": "string"}},
                        "external_addresses": {"type": "array", "items": {"type": "string"}},
                        "protocols": {"type": "array", "items": {"type": "string"}},
                        "uptime_ms": {"type": "integer"},
                        "connected_peers": {"type": "array", "items": {"type": "string"}},
                        "routing_table": {"type": "array", "items": {"type": "string"}},
                        "topics": {"type": "object", "additionalProperties": {"type": "integer"},
                            "description": "our topics, each with the number of connected peers subscribed"},
                        "rejected_messages": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "duplicate_ids": {"type": "integer"}
                    }
                },
                "Peer": {
                    "type": "object",
                    "required": ["peer", "state", "addresses", "direction", "rtt_ms", "smoothed_rtt_ms", "last_seen",
                        "attempt", "next_retry_ms", "sources", "reason", "bootstrap", "admitted", "member_name",
                        "gossip_score", "agent_version", "protocols"],
                    "properties": {
                        "peer": {"type": "string"},
                        "state": {"type": "string", "enum": ["new", "active", "disconnected", "reconnecting", "removed", "left"]},
                        "addresses": {"type": "array", "items": {"type": "string"}},
                        "direction": {"type": "string", "enum": ["inbound", "outbound"], "nullable": true},
                        "rtt_ms": {"type": "number", "nullable": true},
                        "smoothed_rtt_ms": {"type": "number", "nullable": true},
                        "last_seen": {"type": "integer", "description": "unix ms"},
                        "attempt": {"type": "integer"},
                        "next_retry_ms": {"type": "integer", "nullable": true},
                        "sources": {"type": "array", "items": {"type": "string", "enum": ["mdns", "kademlia", "identify", "bootstrap"]}},
                        "reason": {"type": "string", "nullable": true},
                        "bootstrap": {"type": "boolean"},
                        "admitted": {"type": "boolean", "nullable": true,
                            "description": "with a CA, whether the peer showed a valid certificate; null without one"},
                        "member_name": {"type": "string", "nullable": true},
                        "gossip_score": {"type": "number", "nullable": true},
                        "agent_version": {"type": "string", "nullable": true,
                            "description": "what the peer reported through identify, while connected"},
                        "protocols": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "Topic": {
                    "type": "object", "required": ["topic", "mesh_peers", "subscribed_peers"],
                    "properties": {
                        "topic": {"type": "string"},
                        "mesh_peers": {"type": "array", "items": {"type": "string"}},
                        "subscribed_peers": {"type": "array", "items": {"type": "string"}}
                    }
                },
                "TopicChange": {
                    "type": "object", "required": ["topic", "subscribed"],
                    "properties": {"topic": {"type": "string"}, "subscribed": {"type": "boolean"}}
                },
                "PublishRequest": {
                    "type": "object", "required": ["topic"], "additionalProperties": false,
                    "description": "exactly one of data and data_base64",
                    "properties": {
                        "topic": topic_schema(),
                        "data": {"type": "string", "description": "the payload as text (sent as UTF-8)"},
                        "data_base64": {"type": "string", "format": "byte", "description": "the payload as base64"},
                        "content_type": {"type": "string", "pattern": "^[ -~]{1,128}$",
                            "description": "MIME type: 1-128 bytes of printable ASCII"},
                        "id": {"type": "string", "minLength": 1, "maxLength": 16,
                            "description": "idempotency key, 1-64 bytes of UTF-8 (16 characters always fit): repeated within --dedup-window, the first result is returned and nothing is sent"}
                    },
                    "oneOf": [
                        {"required": ["data"], "not": {"required": ["data_base64"]}},
                        {"required": ["data_base64"], "not": {"required": ["data"]}}
                    ]
                },
                "Published": {
                    "type": "object", "required": ["id", "message_id", "recipients", "duplicate"],
                    "properties": {
                        "id": {"type": "string"}, "message_id": {"type": "string"},
                        "recipients": {"type": "integer"}, "duplicate": {"type": "boolean"}
                    }
                },
                "Diagnosis": {
                    "type": "object",
                    "required": ["listen_addresses", "external_addresses", "mdns_enabled", "interfaces", "routing_table_size",
                        "bootstrap", "mesh_sizes", "connections"],
                    "properties": {
                        "listen_addresses": {"type": "array", "items": {"type": "string"}},
                        "external_addresses": {"type": "array", "items": {"type": "string"}},
                        "mdns_enabled": {"type": "boolean"},
                        "interfaces": {"type": "array", "items": {"type": "object", "required": ["name", "addresses", "mdns"],
                            "properties": {"name": {"type": "string"}, "addresses": {"type": "array", "items": {"type": "string"}},
                                "mdns": {"type": "boolean"}}}},
                        "routing_table_size": {"type": "integer"},
                        "bootstrap": {"type": "array", "items": {"type": "object",
                            "properties": {"address": {"type": "string"}, "peer": {"type": "string", "nullable": true},
                                "connected": {"type": "boolean"}}}},
                        "mesh_sizes": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "connections": {"type": "object", "additionalProperties": {"type": "integer"}}
                    }
                }
            }
        },
        "security": [{}, {"bearer": []}],
        "paths": {
            "/v1/node": {"get": {"summary": "the node: peer id, agent, addresses, protocols, uptime, topics",
                "operationId": "getNode",
                "responses": {"200": ok(schema("Node")), "401": unauthorized, "503": stopped}}},
            "/v1/peers": {
                "get": {"summary": "every peer in the peer table", "operationId": "listPeers",
                    "responses": {"200": ok(json!({"type": "array", "items": schema("Peer")})), "401": unauthorized, "503": stopped}},
                "post": {"summary": "dial an address (or a bare /p2p/<id>, looked up in the DHT first) and wait for the outcome", "operationId": "connectPeer",
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["address"], "additionalProperties": false,
                        "properties": {"address": {"type": "string", "description": "a multiaddr, /p2p/<id> optional"}}}}}},
                    "responses": {
                        "200": ok(json!({"type": "object", "required": ["peer"], "properties": {"peer": {"type": "string"}}})),
                        "400": bad_request, "401": unauthorized,
                        "413": error_response("body too large"), "415": unsupported_media_type.clone(),
                        "404": error_response("a peer given by id alone was not found in the DHT"),
                        "422": error_response("the dial failed, or this node refused the connection"), "503": stopped}}
            },
            "/v1/peers/{peer}": {"delete": {"summary": "close every connection to a peer (it is then removed, not redialled)",
                "operationId": "disconnectPeer",
                "parameters": [path_parameter("peer", "peer id (ed25519 or secp256k1 keys)", json!({"type": "string",
                    "pattern": "^(12D3KooW[1-9A-HJ-NP-Za-km-z]{44}|16Uiu2HA[1-9A-HJ-NP-Za-km-z]{45})$"}))],
                "responses": {
                    "200": ok(json!({"type": "object", "properties": {"peer": {"type": "string"}, "disconnected": {"type": "boolean"}}})),
                    "400": bad_request, "401": unauthorized, "404": error_response("not connected"), "503": stopped}}},
            "/v1/topics": {"get": {"summary": "our topics with their mesh and subscribed peers", "operationId": "listTopics",
                "responses": {"200": ok(json!({"type": "array", "items": schema("Topic")})), "401": unauthorized, "503": stopped}}},
            "/v1/topics/{topic}": {
                "post": {"summary": "subscribe", "operationId": "subscribeTopic",
                    "parameters": [path_parameter("topic", "topic name", topic_schema())],
                    "responses": {"200": ok(schema("TopicChange")), "400": bad_request, "401": unauthorized,
                        "409": error_response("the node is in --max-topics topics already"), "503": stopped}},
                "delete": {"summary": "unsubscribe", "operationId": "unsubscribeTopic",
                    "parameters": [path_parameter("topic", "topic name", topic_schema())],
                    "responses": {"200": ok(schema("TopicChange")), "400": bad_request, "401": unauthorized,
                        "404": error_response("not subscribed"), "503": stopped}}
            },
            "/v1/publish": {"post": {"summary": "publish one message", "operationId": "publish",
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema("PublishRequest")}}},
                "responses": {"200": ok(schema("Published")), "400": bad_request, "401": unauthorized,
                    "409": error_response("no connected peer is subscribed to the topic yet, or the same message went out moments ago"),
                    "413": error_response("payload larger than --max-message-size allows"),
                    "415": unsupported_media_type,
                    "500": error_response("gossipsub failed to sign or encode the message"),
                    "503": error_response("the node has stopped, or the send queues to every subscribed peer are full")}}},
            "/v1/events": {"get": {"summary": "the live event stream (Server-Sent Events)", "operationId": "events",
                "parameters": [
                    {"name": "types", "in": "query", "required": false, "schema": {"type": "string"},
                        "description": "comma-separated event names: listening, discovered, connected, connection_refused, disconnected, subscribed, message, peer_state, ping, peer_admitted, peer_refused, peer_banned, lagged"},
                    {"name": "topic", "in": "query", "required": false, "schema": {"type": "string"},
                        "description": "only events about this topic (message, subscribed)"}
                ],
                "responses": {"200": {"description": "one SSE event per node event: event = its name, data = its JSON",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                    "400": bad_request, "401": unauthorized}}},
            "/v1/diagnose": {"get": {"summary": "what to check when discovery fails", "operationId": "diagnose",
                "responses": {"200": ok(schema("Diagnosis")), "401": unauthorized, "503": stopped}}},
            "/metrics": {"get": {"summary": "Prometheus metrics (OpenMetrics text): libp2p's and swarmnode's",
                "operationId": "metrics",
                "responses": {"200": {"description": "OK", "content": {"application/openmetrics-text": {"schema": {"type": "string"}}}},
                    "401": unauthorized, "503": stopped}}},
            "/v1/openapi.json": {"get": {"summary": "this document", "operationId": "openapi",
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
                    "401": unauthorized}}}
        }
    })
}

/// The (method, path) pairs the document describes, methods upper-case, paths as written there.
pub fn documented_routes(document: &Value) -> Vec<(String, String)> {
    let mut routes = Vec::new();
    if let Some(paths) = document["paths"].as_object() {
        for (path, operations) in paths {
            if let Some(operations) = operations.as_object() {
                for method in operations.keys() {
                    routes.push((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_the_router_serves() {
        let mut documented = documented_routes(&document());
        let mut served = super::super::routes();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
