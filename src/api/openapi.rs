//! The OpenAPI 3.1 description of the API, served at `GET /v1/openapi.json`, derived with utoipa: each operation from
//! its handler's `#[utoipa::path]`, each schema from the `ToSchema` derive of the type the handler writes or reads
//! (the node's views, `bodies.rs`). The route table (`super::route_table`) registers every handler with the router
//! and the document in one step, so no route is served undocumented; a test sends every documented operation to the
//! router, so none is documented unserved. `finish` adds what the derives cannot say, and the answers every route
//! can give before its handler runs (the guard, the timeouts, the connection cap).

use serde_json::Value;
use utoipa::{
    Modify, OpenApi,
    openapi::{
        self, AllOfBuilder, ContentBuilder, ObjectBuilder, OneOfBuilder, Ref, RefOr, ResponseBuilder, Schema,
        security::{Http, HttpAuthScheme, SecurityScheme},
    },
};

use crate::node::EventKind;

/// The document's frame: title, description, the optional bearer token. The route table adds the operations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "swarmnode control API",
        description = "Local HTTP/JSON control of a running swarmnode. Errors are {\"error\": {\"code\", \"message\"}}."
    ),
    modifiers(&BearerToken),
    security((), ("bearer" = []))
)]
pub(super) struct ApiDoc;

/// The `bearer` scheme the security requirement names (required when the API has `--api-token-file`).
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, document: &mut openapi::OpenApi) {
        document
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// Adds what the derives cannot say to the document the route table built: a publish carries exactly one of `data`
/// and `data_base64` (a state put one of `value` and `value_base64`), `?types=` takes the event names of
/// `EventKind`, a key path parameter is written `{key}` where the router has the wildcard `{*key}`, and every route
/// may answer 403, 408 and 503 before its handler runs.
pub(super) fn finish(document: &mut openapi::OpenApi) {
    exactly_one(document, "PublishBody", &["data", "data_base64"]);
    exactly_one(document, "StatePut", &["value", "value_base64"]);
    exactly_one_check(document);
    describe_event_types(document);
    plain_path_parameters(document);
    describe_answers_before_the_handler(document);
}

/// axum's catch-all `{*key}` (a parameter that may span segments) is a plain `{key}` in OpenAPI.
fn plain_path_parameters(document: &mut openapi::OpenApi) {
    let paths = std::mem::take(&mut document.paths.paths);
    document.paths.paths = paths
        .into_iter()
        .map(|(path, item)| (path.replace("{*", "{"), item))
        .collect();
}

/// The guard's 403s, the timeouts' 408 and the connection cap's 503, on every operation.
fn describe_answers_before_the_handler(document: &mut openapi::OpenApi) {
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    let cap = "too_many_connections: --api-max-connections connections are open; retry after the Retry-After seconds";
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            responses.insert(
                "403".into(),
                error(
                    "forbidden_host: without a token, the Host header must name this machine; forbidden_origin: a \
                     state-changing request from a page of another origin",
                ),
            );
            responses.insert(
                "408".into(),
                error("request_timeout: the request, or its body, took longer than --api-request-timeout or --api-body-timeout"),
            );
            match responses.get_mut("503") {
                Some(RefOr::T(existing)) => existing.description = format!("{}; {cap}", existing.description),
                _ => {
                    responses.insert("503".into(), error(cap));
                }
            }
        }
    }
}

/// The body schema `name` requires exactly one of `fields`.
fn exactly_one(document: &mut openapi::OpenApi, name: &str, fields: &[&str]) {
    let Some(schema) = document
        .components
        .as_mut()
        .and_then(|components| components.schemas.get_mut(name))
    else {
        return;
    };
    let one_of = fields.iter().fold(OneOfBuilder::new(), |one_of, field| {
        one_of.item(ObjectBuilder::new().required(*field))
    });
    *schema = RefOr::T(Schema::AllOf(
        AllOfBuilder::new()
            .item(schema.clone())
            .item(one_of)
            .description(Some(format!("exactly one of {}", fields.join(" and "))))
            .build(),
    ));
}

/// A check is exactly one of `http`, `tcp` and `ttl`; each service tag is a short word (the schema promises the
/// characters that always pass the node's text rule).
fn exactly_one_check(document: &mut openapi::OpenApi) {
    exactly_one(document, "CheckBody", &["http", "tcp", "ttl"]);
    let Some(schemas) = document.components.as_mut().map(|components| &mut components.schemas) else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(body))) = schemas.get_mut("ServiceBody")
        && let Some(RefOr::T(Schema::Array(tags))) = body.properties.get_mut("tags")
    {
        tags.items = openapi::schema::ArrayItems::RefOrSchema(Box::new(RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(openapi::Type::String)
                .pattern(Some("^[A-Za-z0-9._:=-]{1,64}$"))
                .build(),
        ))));
    }
}

fn describe_event_types(document: &mut openapi::OpenApi) {
    let types = document
        .paths
        .paths
        .get_mut("/v1/events")
        .and_then(|item| item.get.as_mut())
        .and_then(|operation| operation.parameters.as_mut())
        .and_then(|parameters| parameters.iter_mut().find(|parameter| parameter.name == "types"));
    if let Some(types) = types {
        let names: Vec<&str> = EventKind::names().collect();
        types.description = Some(format!(
            "Comma-separated event names, all when absent: {}.",
            names.join(", ")
        ));
    }
}

/// The (method, path) pairs a document describes, methods upper-case, paths as written there.
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
pub(super) mod tests {
    use axum::{
        Router,
        body::{Body, to_bytes},
        http::{Request, StatusCode},
    };
    use tower::ServiceExt;

    use super::*;

    /// Sends a request as a local client would; the answer's JSON, `Null` for a stream or a body that is not JSON.
    pub(in crate::api) async fn send(
        router: &Router,
        method: &str,
        path: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1:5100")
            .header("content-type", "application/json")
            .body(body.into())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response.headers().get(axum::http::header::CONTENT_TYPE);
        if content_type.is_some_and(|value| value == "text/event-stream") {
            // A stream: its headers are the answer.
            return (status, Value::Null);
        }
        let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// The document the router serves, with the router, over a node that has stopped: every operation that asks the
    /// node answers 503 node_stopped, which shows it reached its handler.
    async fn stopped_node_router() -> (Router, Value) {
        let router = super::super::router(stopped_node().await, None, 1 << 20, Default::default());
        let (status, document) = send(&router, "GET", "/v1/openapi.json", "").await;
        assert_eq!(status, StatusCode::OK);
        (router, document)
    }

    /// The handle of a node that has stopped.
    pub(in crate::api) async fn stopped_node() -> crate::node::NodeHandle {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::NodeConfig::with_data_dir(dir.path().to_path_buf());
        config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()];
        config.mdns = false;
        let node = crate::node::spawn(config).await.unwrap();
        let handle = node.handle.clone();
        node.shutdown().await;
        handle
    }

    #[tokio::test]
    async fn the_document_lists_exactly_the_routes_the_router_serves() {
        let (router, document) = stopped_node_router().await;
        let documented = documented_routes(&document);
        assert_eq!(documented.len(), 24, "{documented:?}");
        for (method, path) in documented {
            let uri = path
                .replace("{peer}", "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5")
                .replace("{topic}", "probe")
                .replace("{id}", "web")
                .replace("{check}", "pass")
                .replace("{key}", "user:42");
            let body = match path.as_str() {
                "/v1/peers" if method == "POST" => r#"{"address": "/ip4/127.0.0.1/tcp/1"}"#,
                "/v1/publish" => r#"{"topic": "probe", "data": "x"}"#,
                "/v1/perf" => r#"{"peer": "12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5", "upload": "1KiB"}"#,
                "/v1/services/{id}" if method == "PUT" => r#"{"name": "web", "port": 8080}"#,
                "/v1/state/{key}" if method == "PUT" => r#"{"value": "x"}"#,
                _ => "",
            };
            let (status, answer) = send(&router, &method, &uri, body).await;
            // The document, the event stream and the metrics (kept current by the loop) need nothing of the node.
            if matches!(
                path.as_str(),
                "/v1/openapi.json" | "/v1/events" | "/v1/state/watch" | "/metrics"
            ) {
                assert_eq!(status, StatusCode::OK, "{method} {path}");
            } else {
                assert_eq!(
                    (status, &answer["error"]["code"]),
                    (StatusCode::SERVICE_UNAVAILABLE, &Value::from("node_stopped")),
                    "{method} {path}"
                );
            }
        }
    }

    #[tokio::test]
    async fn the_document_says_what_the_derives_cannot() {
        let (_, document) = stopped_node_router().await;
        let service_id = &document["paths"]["/v1/services/{id}"]["put"]["parameters"][0]["schema"]["pattern"];
        assert_eq!(
            service_id,
            crate::config::services::SERVICE_ID_PATTERN,
            "the id rule the node applies"
        );
        assert_eq!(document["openapi"], "3.1.0");
        let publish = &document["components"]["schemas"]["PublishBody"];
        assert_eq!(publish["allOf"][1]["oneOf"][0]["required"], serde_json::json!(["data"]));
        let put = &document["components"]["schemas"]["StatePut"];
        assert_eq!(
            put["allOf"][1]["oneOf"][1]["required"],
            serde_json::json!(["value_base64"])
        );
        let key = &document["paths"]["/v1/state/{key}"]["get"]["parameters"][0];
        assert_eq!((&key["name"], &key["in"]), (&Value::from("key"), &Value::from("path")));
        let types = &document["paths"]["/v1/events"]["get"]["parameters"][0];
        assert_eq!(types["name"], "types");
        let description = types["description"].as_str().unwrap();
        for name in EventKind::names() {
            assert!(description.contains(name), "{name} missing from {description}");
        }
        assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
}
