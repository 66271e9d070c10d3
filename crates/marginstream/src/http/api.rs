//! The query API (contract section 9): exact figures for every customer held, whatever the
//! exposure budget, as JSON with decimal strings, read from the readers' current snapshot.
//!
//! - `GET /api/v1/customers/{customer_id}`: one customer, or 404.
//! - `GET /api/v1/customers?window=&sort=&order=&limit=&segment=&cursor=`: a page of
//!   customers in the asked order, with a cursor to the next page.
//! - `GET /api/v1/portfolio`: the portfolio, counters, watermark and tiers.
//!
//! A page is chosen by a linear scan and a partial selection of the snapshot's customers
//! (no sorted index is kept): a few milliseconds at 100k customers, on a blocking thread,
//! never on the loop. The cursor is the last customer's sort key and id, with the query's
//! parameters, so a page follows exactly where the previous one ended, and a cursor of
//! another query is refused.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use marginstream_exporter::json::{customer_json, head_json};
use marginstream_model::GaugeView;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::live::Shared;
use crate::published::{FlatView, PublishSettings, Snapshot};

/// Customers per page unless `limit` says otherwise.
pub const LIMIT_DEFAULT: usize = 100;

/// The most customers per page.
pub const LIMIT_MAX: usize = 1_000;

/// The sort keys of `/api/v1/customers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SortKey {
    Revenue,
    GmMarket,
    GmOperating,
    ServicesDrag,
    CustomerId,
}

impl SortKey {
    const ALL: [(&'static str, SortKey); 5] = [
        ("revenue", SortKey::Revenue),
        ("gm_market_ratio", SortKey::GmMarket),
        ("gm_operating_ratio", SortKey::GmOperating),
        ("services_drag_ratio", SortKey::ServicesDrag),
        ("customer_id", SortKey::CustomerId),
    ];

    fn parse(text: &str) -> Option<SortKey> {
        SortKey::ALL
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, key)| *key)
    }

    fn name(self) -> &'static str {
        SortKey::ALL
            .iter()
            .find(|(_, key)| *key == self)
            .map(|(name, _)| *name)
            .expect("every key has a name")
    }
}

/// A parsed `/api/v1/customers` query.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListQuery {
    window: usize,
    sort: SortKey,
    descending: bool,
    limit: usize,
    segment: Option<usize>,
    /// Where the previous page ended.
    after: Option<Position>,
}

/// A customer's place in an ordering: its key (`None` for an absent ratio, which sorts
/// last in either order) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Position {
    key: Option<Decimal>,
    id: String,
}

/// A bad parameter: answered 400 with an error naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BadParameter {
    parameter: String,
    problem: String,
}

impl IntoResponse for BadParameter {
    fn into_response(self) -> Response {
        let error = format!("{}: {}", self.parameter, self.problem);
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "parameter": self.parameter})),
        )
            .into_response()
    }
}

fn bad_request(parameter: &str, problem: impl std::fmt::Display) -> BadParameter {
    BadParameter {
        parameter: parameter.to_owned(),
        problem: problem.to_string(),
    }
}

fn not_found(message: String) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": message}))).into_response()
}

/// Runs `work` on a blocking thread (large snapshots take milliseconds), mapping a failure to
/// a 500.
async fn blocking(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": "the query failed"})),
        )
            .into_response()
    })
}

/// Returns the tier of customer `index`, if tiers are configured.
fn segment_of(settings: &PublishSettings, view: &FlatView, index: usize) -> Option<usize> {
    let config = settings.segments.as_ref()?;
    Some(config.tier_of(view.customer(index).1))
}

/// Returns one customer's object: the replay JSON one plus `segment` and `exposed`.
fn customer_object(
    settings: &PublishSettings,
    snapshot: &Snapshot,
    view: &FlatView,
    index: usize,
) -> Value {
    let (id, figures) = view.customer(index);
    let mut object = customer_json(view.window_labels(), id, figures);
    object["segment"] = match (segment_of(settings, view, index), &settings.segments) {
        (Some(tier), Some(config)) => Value::String(config.tiers[tier].name.clone()),
        _ => Value::Null,
    };
    object["exposed"] = Value::Bool(snapshot.is_exposed(id));
    object
}

/// `GET /api/v1/customers/{customer_id}`.
pub async fn customer(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    blocking(move || {
        let snapshot = shared.board.latest();
        let view = snapshot.view();
        match view.find(&id) {
            Some(index) => Json(customer_object(
                shared.board.settings(),
                &snapshot,
                view,
                index,
            ))
            .into_response(),
            None => not_found(format!("customer {id:?} is not held by this process")),
        }
    })
    .await
}

/// `GET /api/v1/portfolio`.
pub async fn portfolio(State(shared): State<Arc<Shared>>) -> Response {
    blocking(move || {
        let snapshot = shared.board.latest();
        let settings = shared.board.settings();
        Json(head_json(snapshot.view(), settings.segments.as_ref())).into_response()
    })
    .await
}

/// `GET /api/v1/customers?...`.
pub async fn customers(State(shared): State<Arc<Shared>>, RawQuery(query): RawQuery) -> Response {
    blocking(move || {
        let snapshot = shared.board.latest();
        let settings = shared.board.settings();
        let view = snapshot.view();
        let query = match parse_query(query.as_deref().unwrap_or(""), settings, view) {
            Ok(query) => query,
            Err(bad) => return bad.into_response(),
        };
        list(settings, &snapshot, view, &query).into_response()
    })
    .await
}

/// Parses and checks every parameter; the first bad one is the answer.
fn parse_query(
    text: &str,
    settings: &PublishSettings,
    view: &FlatView,
) -> Result<ListQuery, BadParameter> {
    let mut parameters: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(text.as_bytes()) {
        if parameters
            .insert(name.to_string(), value.to_string())
            .is_some()
        {
            return Err(bad_request(&name, "is given twice"));
        }
    }
    for name in parameters.keys() {
        if !["window", "sort", "order", "limit", "segment", "cursor"].contains(&name.as_str()) {
            return Err(bad_request(
                name,
                "is not a parameter (window, sort, order, limit, segment, cursor)",
            ));
        }
    }
    let labels = view.window_labels();
    let window = match parameters.get("window") {
        None => settings.exposure.rank_window,
        Some(window) => labels.iter().position(|l| l == window).ok_or_else(|| {
            bad_request(
                "window",
                format!("{window:?} is not a window (one of {})", labels.join(", ")),
            )
        })?,
    };
    let sort = match parameters.get("sort") {
        None => SortKey::Revenue,
        Some(sort) => SortKey::parse(sort).ok_or_else(|| {
            bad_request(
                "sort",
                format!(
                    "{sort:?} is not one of {}",
                    SortKey::ALL.map(|(name, _)| name).join(", ")
                ),
            )
        })?,
    };
    let descending = match parameters.get("order").map(String::as_str) {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(bad_request(
                "order",
                format!("{other:?} is neither desc nor asc"),
            ))
        }
    };
    let limit = match parameters.get("limit") {
        None => LIMIT_DEFAULT,
        Some(limit) => match limit.parse::<usize>() {
            Ok(limit) if (1..=LIMIT_MAX).contains(&limit) => limit,
            _ => {
                return Err(bad_request(
                    "limit",
                    format!("{limit:?} is not a whole number from 1 to {LIMIT_MAX}"),
                ))
            }
        },
    };
    let segment = match parameters.get("segment") {
        None => None,
        Some(name) => {
            let Some(config) = &settings.segments else {
                return Err(bad_request(
                    "segment",
                    "no segments are configured (ledger.segments)",
                ));
            };
            Some(
                config
                    .tiers
                    .iter()
                    .position(|tier| &tier.name == name)
                    .ok_or_else(|| {
                        bad_request(
                            "segment",
                            format!(
                                "{name:?} is not a segment (one of {})",
                                config
                                    .tiers
                                    .iter()
                                    .map(|t| t.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?,
            )
        }
    };
    let mut query = ListQuery {
        window,
        sort,
        descending,
        limit,
        segment,
        after: None,
    };
    if let Some(cursor) = parameters.get("cursor") {
        query.after = Some(decode_cursor(cursor, &query, labels)?);
    }
    Ok(query)
}

/// The query's parameters as a cursor carries them: a cursor only continues its own query.
fn cursor_scope(query: &ListQuery, labels: &[String]) -> Value {
    json!({
        "window": labels[query.window],
        "sort": query.sort.name(),
        "order": if query.descending { "desc" } else { "asc" },
        "segment": query.segment,
    })
}

fn encode_cursor(query: &ListQuery, labels: &[String], position: &Position) -> String {
    let value = json!({
        "query": cursor_scope(query, labels),
        "key": position.key.map(|k| k.to_string()),
        "id": position.id,
    });
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

fn decode_cursor(
    text: &str,
    query: &ListQuery,
    labels: &[String],
) -> Result<Position, BadParameter> {
    let invalid = || bad_request("cursor", "is not a cursor this API gave (next_cursor)");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| invalid())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    if value["query"] != cursor_scope(query, labels) {
        return Err(bad_request(
            "cursor",
            "belongs to a query with another window, sort, order or segment",
        ));
    }
    let id = value["id"].as_str().ok_or_else(invalid)?.to_owned();
    let key = match &value["key"] {
        Value::Null => None,
        Value::String(text) => Some(text.parse::<Decimal>().map_err(|_| invalid())?),
        _ => return Err(invalid()),
    };
    Ok(Position { key, id })
}

/// Returns the sort key of customer `index`.
fn key_of(view: &FlatView, index: usize, query: &ListQuery) -> Option<Decimal> {
    let figures = view.customer(index).1.window(query.window);
    match query.sort {
        SortKey::Revenue => Some(figures.revenue()),
        SortKey::CustomerId => None,
        ratio => {
            let ratios = figures.ratios()?;
            Some(match ratio {
                SortKey::GmMarket => ratios.gm_market,
                SortKey::GmOperating => ratios.gm_operating,
                _ => ratios.services_drag,
            })
        }
    }
}

/// The order of the contract: by key (descending or ascending), absent ratios last in
/// either order, then by id ascending; by id alone for `sort=customer_id`.
fn compare(
    a: (&Option<Decimal>, &str),
    b: (&Option<Decimal>, &str),
    query: &ListQuery,
) -> Ordering {
    if query.sort == SortKey::CustomerId {
        let order = a.1.cmp(b.1);
        return if query.descending {
            order.reverse()
        } else {
            order
        };
    }
    let by_key = match (a.0, b.0) {
        (Some(x), Some(y)) => {
            let order = x.cmp(y);
            if query.descending {
                order.reverse()
            } else {
                order
            }
        }
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    by_key.then_with(|| a.1.cmp(b.1))
}

/// Answers one page.
fn list(
    settings: &PublishSettings,
    snapshot: &Snapshot,
    view: &FlatView,
    query: &ListQuery,
) -> Json<Value> {
    let mut candidates: Vec<(Option<Decimal>, usize)> = (0..view.customer_count())
        .filter(|index| {
            query.segment.is_none() || segment_of(settings, view, *index) == query.segment
        })
        .map(|index| (key_of(view, index, query), index))
        .filter(|(key, index)| {
            query.after.as_ref().is_none_or(|after| {
                compare(
                    (key, view.customer(*index).0),
                    (&after.key, &after.id),
                    query,
                ) == Ordering::Greater
            })
        })
        .collect();
    let by_order = |a: &(Option<Decimal>, usize), b: &(Option<Decimal>, usize)| {
        compare(
            (&a.0, view.customer(a.1).0),
            (&b.0, view.customer(b.1).0),
            query,
        )
    };
    let more = candidates.len() > query.limit;
    if more {
        candidates.select_nth_unstable_by(query.limit, by_order);
        candidates.truncate(query.limit);
    }
    candidates.sort_unstable_by(by_order);
    let next_cursor = match candidates.last() {
        Some((key, index)) if more => Value::String(encode_cursor(
            query,
            view.window_labels(),
            &Position {
                key: *key,
                id: view.customer(*index).0.to_owned(),
            },
        )),
        _ => Value::Null,
    };
    let customers: Vec<Value> = candidates
        .iter()
        .map(|(_, index)| customer_object(settings, snapshot, view, *index))
        .collect();
    Json(json!({
        "window": view.window_labels()[query.window],
        "watermark_seconds": view.watermark().map(|t| t.seconds),
        "customers": customers,
        "next_cursor": next_cursor,
    }))
}
