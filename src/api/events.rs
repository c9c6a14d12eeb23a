//! `GET /v1/events`: the node's event stream as Server-Sent Events, one SSE event per node event (`event:` its name,
//! `data:` the same JSON line `swarmnode run` prints), filtered by `?types=` and `?topic=`; a state watch
//! (`GET /v1/state/watch`, `state.rs`) is the same stream filtered to `state_changed` events under a key prefix. Each client reads its own
//! event receiver, so a slow client only hurts itself: when it falls behind (events it missed were dropped from the
//! node's buffer, or more than `--api-event-stream-bytes` wait for it) it gets a final `lagged` event and the stream
//! ends; the node never waits for it. The stream takes the next event only when the server asks for it (one event at
//! a time, as the client's connection drains), so it buffers nothing ahead of the channel; a client that stops
//! reading altogether is closed by the server's write timeout. At most `--api-max-event-streams` streams are open at
//! once: one more is answered 503 with `Retry-After`.

use std::{collections::HashSet, convert::Infallible, time::Duration};

use axum::{
    extract::{Query, State},
    http::{StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event as SseEvent, KeepAlive, Sse},
    },
};
use futures::{Stream, stream};
use serde::Deserialize;
use tokio::sync::OwnedSemaphorePermit;

use super::{
    ApiState,
    bodies::ErrorBody,
    error::{ApiError, shorten},
};
use crate::{
    node::{EventKind, EventReceiver, RecvError, watch_matches},
    time::now_unix_ms,
};

/// Comment lines sent while nothing happens, so proxies and clients see the stream is alive.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The stream's filters; the document lists the event names `types` takes (`openapi::describe_event_types`).
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Comma-separated event names; all when absent.
    types: Option<String>,
    /// Only events about this topic (message, subscribed).
    topic: Option<String>,
}

/// Which events a client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    types: Option<HashSet<&'static str>>,
    topic: Option<String>,
    /// Only `state_changed` events of keys starting with this.
    key_prefix: Option<String>,
}

impl EventFilter {
    /// Parses `?types=a,b` against the known event names; an unknown name is an error, not an empty stream.
    pub fn new(types: Option<&str>, topic: Option<String>) -> Result<Self, String> {
        let types = match types {
            None => None,
            Some(list) => Some(
                list.split(',')
                    .map(str::trim)
                    .filter(|name| !name.is_empty())
                    .map(|name| {
                        EventKind::names().find(|known| *known == name).ok_or_else(|| {
                            let known: Vec<&str> = EventKind::names().collect();
                            format!("unknown event type {}; known: {}", shorten(name), known.join(", "))
                        })
                    })
                    .collect::<Result<HashSet<_>, _>>()?,
            ),
        };
        Ok(EventFilter {
            types,
            topic,
            key_prefix: None,
        })
    }

    /// A state watch: the changes of keys starting with `prefix` (every key when it is empty).
    pub fn state_watch(prefix: String) -> Self {
        EventFilter {
            key_prefix: Some(prefix),
            ..EventFilter::default()
        }
    }

    pub fn wants(&self, kind: &EventKind) -> bool {
        self.types.as_ref().is_none_or(|types| types.contains(kind.name()))
            && self.topic.as_deref().is_none_or(|topic| kind.topic() == Some(topic))
            && self
                .key_prefix
                .as_deref()
                .is_none_or(|prefix| watch_matches(kind, prefix))
    }
}

/// The live event stream (Server-Sent Events).
#[utoipa::path(get, path = "/v1/events", operation_id = "events", params(EventsQuery), responses(
    (status = 200, description = "one SSE event per node event: event = its name, data = its JSON",
        content_type = "text/event-stream", body = String),
    (status = 400, description = "invalid_event_type, invalid_query: an unknown event name or query parameter",
        body = ErrorBody),
    (status = 401, description = "unauthorized: a missing or wrong bearer token (only when the API requires one)",
        body = ErrorBody),
    (status = 503, description = "too_many_event_streams: --api-max-event-streams streams are open; retry after \
        the Retry-After seconds", body = ErrorBody),
))]
pub async fn events(
    State(state): State<ApiState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    let filter = EventFilter::new(query.types.as_deref(), query.topic)
        .map_err(|why| ApiError::bad_request("invalid_event_type", why))?;
    Ok(open_stream(&state, filter))
}

/// The SSE answer of one stream of the events `filter` wants, or 503 when `--api-max-event-streams` are open.
pub(super) fn open_stream(state: &ApiState, filter: EventFilter) -> Response {
    let Ok(permit) = state.event_streams.clone().try_acquire_owned() else {
        state
            .handle
            .metrics()
            .api_refused
            .get_or_create(&crate::metrics::ReasonLabel {
                reason: "event_streams",
            })
            .inc();
        let error = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_event_streams",
            format!(
                "{} event streams are open, the most this API serves at once (--api-max-event-streams); retry shortly",
                state.limits.max_event_streams
            ),
        );
        return ([(header::RETRY_AFTER, "1")], error).into_response();
    };
    let stream = EventStream {
        receiver: state.handle.subscribe_events(),
        filter,
        budget: state.limits.event_stream_bytes as u64,
        _permit: permit,
    };
    Sse::new(event_stream(stream))
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response()
}

/// One client's stream: its receiver, what it asked for, how far behind it may fall, and its place under the cap
/// (given back when the stream is dropped).
struct EventStream {
    receiver: EventReceiver,
    filter: EventFilter,
    budget: u64,
    _permit: OwnedSemaphorePermit,
}

/// The final event of a stream that fell behind.
fn lagged(skipped: u64) -> SseEvent {
    let notice = serde_json::json!({"ts": now_unix_ms(), "event": "lagged", "skipped": skipped});
    SseEvent::default().event("lagged").data(notice.to_string())
}

/// The SSE events for one client: matching node events until the node stops, or a `lagged` notice and the end.
fn event_stream(stream: EventStream) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    stream::unfold(Some(stream), move |stream| async move {
        let mut stream = stream?;
        loop {
            let behind = stream.receiver.behind();
            if behind.bytes > stream.budget {
                return Some((Ok(lagged(behind.events + 1)), None));
            }
            match stream.receiver.recv().await {
                Ok(event) if stream.filter.wants(&event.kind) => {
                    let sse = SseEvent::default().event(event.kind.name()).json_data(&event);
                    // An event always serializes; were it not to, skipping it beats ending the stream.
                    if let Ok(sse) = sse {
                        return Some((Ok(sse), Some(stream)));
                    }
                }
                Ok(_) => {}
                Err(RecvError::Lagged(skipped)) => return Some((Ok(lagged(skipped)), None)),
                Err(RecvError::Closed) => return None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use futures::StreamExt;

    use super::*;
    use crate::node::{EVENT_OVERHEAD, Event, EventBufferLimits, event_channel};

    fn subscribed(topic: &str) -> EventKind {
        EventKind::Subscribed {
            peer: libp2p::PeerId::random(),
            topic: topic.into(),
        }
    }

    #[test]
    fn no_filter_wants_everything() {
        let filter = EventFilter::new(None, None).unwrap();
        assert!(filter.wants(&subscribed("a")));
    }

    #[test]
    fn types_and_topic_narrow_the_stream() {
        let filter = EventFilter::new(Some("subscribed, message"), Some("a".into())).unwrap();
        assert!(filter.wants(&subscribed("a")));
        assert!(!filter.wants(&subscribed("b")));
        let ping = EventKind::Ping {
            peer: libp2p::PeerId::random(),
            rtt_ms: 1.0,
        };
        assert!(!filter.wants(&ping));
        assert!(!EventFilter::new(Some("subscribed"), None).unwrap().wants(&ping));
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_gets_a_final_lagged_event_and_the_stream_ends() {
        let (sender, receiver) = event_channel(EventBufferLimits {
            bytes: 1 << 20,
            events: 4,
            max_age: Duration::from_secs(60),
        });
        let stream = event_stream(with_budget(receiver, u64::MAX));
        // The node keeps sending while nobody reads: the channel drops the oldest, never waits.
        for _ in 0..10 {
            sender.send(Event::now(subscribed("a")), Instant::now());
        }
        let events: Vec<SseEvent> = stream.map(|e| e.unwrap()).collect().await;
        assert_eq!(events.len(), 1, "only the notice: the stream ends there");
        let text = format!("{:?}", events[0]);
        assert!(text.contains("lagged") && text.contains("\\\"skipped\\\":6"), "{text}");
    }

    fn with_budget(receiver: EventReceiver, budget: u64) -> EventStream {
        EventStream {
            receiver,
            filter: EventFilter::default(),
            budget,
            _permit: std::sync::Arc::new(tokio::sync::Semaphore::new(1))
                .try_acquire_owned()
                .unwrap(),
        }
    }

    #[tokio::test]
    async fn a_reader_further_behind_than_its_byte_budget_is_cut_off_though_the_node_still_keeps_the_events() {
        let (sender, receiver) = event_channel(EventBufferLimits {
            bytes: 1 << 20,
            events: 1000,
            max_age: Duration::from_secs(60),
        });
        let mut stream = Box::pin(event_stream(with_budget(receiver, 3 * EVENT_OVERHEAD as u64)));
        sender.send(Event::now(subscribed("a")), Instant::now());
        let first = format!("{:?}", stream.next().await.unwrap().unwrap());
        assert!(first.contains("subscribed"), "within budget it streams: {first}");
        for _ in 0..5 {
            sender.send(Event::now(subscribed("a")), Instant::now());
        }
        let rest: Vec<SseEvent> = stream.map(|e| e.unwrap()).collect().await;
        assert_eq!(rest.len(), 1, "only the notice: {rest:?}");
        let text = format!("{:?}", rest[0]);
        assert!(text.contains("lagged") && text.contains("\\\"skipped\\\":5"), "{text}");
    }

    #[test]
    fn a_state_watch_wants_the_changes_of_keys_under_its_prefix_only() {
        let changed = |key: &str| EventKind::StateChanged {
            key: key.into(),
            op: crate::node::StateOp::Put,
            source: "local",
            version: "1".into(),
            origin: "peer".into(),
            data: None,
        };
        let watch = EventFilter::state_watch("user/".into());
        assert!(watch.wants(&changed("user/42")));
        assert!(!watch.wants(&changed("users")));
        assert!(!watch.wants(&subscribed("user/42")), "only state changes");
        assert!(EventFilter::state_watch(String::new()).wants(&changed("any")));
    }

    #[test]
    fn an_unknown_type_is_an_error_naming_the_known_ones() {
        let error = EventFilter::new(Some("message,gossip"), None).unwrap_err();
        assert!(error.contains("\"gossip\"") && error.contains("peer_state"), "{error}");
    }
}
