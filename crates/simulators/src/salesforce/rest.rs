//! The simulator's REST data API under `/services/data`: versions, query / queryAll with
//! `nextRecordsUrl` paging (batch size from `Sforce-Query-Options`), sObject rows (GET,
//! PATCH, DELETE), create, describe, and sObject Collections update — in Salesforce's
//! wire format, errors as `[{"message", "errorCode", "fields"}]`.

use std::sync::Arc;

use axum::extract::{Path, Query as QueryParams, Request, State};
use axum::http::{header::AUTHORIZATION, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::query::{self, attributes, RecordSource};
use super::store::WriteError;
use super::Shared;
use crate::wire::RecordId;

/// Most records one sObject Collections request may carry.
// Source: REST API Developer Guide, "Update Records Using sObject Collections" ("up to 200
// records"); over the limit Salesforce answers EXCEEDED_ID_LIMIT "record limit reached.
// cannot submit more than 200 records into this call" (seen in
// sorenkrabbe/Chrome-Salesforce-inspector#134, superfell/Beatbox#3).
const COLLECTION_LIMIT: usize = 200;

/// API versions the simulator answers (`GET /services/data`).
const VERSIONS: &[(&str, &str)] = &[
    ("60.0", "Spring '24"),
    ("61.0", "Summer '24"),
    ("62.0", "Winter '25"),
    ("63.0", "Spring '25"),
    ("64.0", "Summer '25"),
    ("65.0", "Winter '26"),
    ("66.0", "Spring '26"),
];

/// Oldest version accepted in a path; older ones get 404 like a retired version.
const OLDEST_VERSION: f64 = 20.0;

/// The user a bearer token belongs to, put in the request by [`require_session`].
#[derive(Clone)]
struct Caller(String);

/// An error answer: `[{"message": …, "errorCode": …, "fields": […]}]` with a status.
struct ApiError(WriteError);

impl ApiError {
    fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError(WriteError {
            status,
            code: code.to_string(),
            message: message.into(),
            fields: Vec::new(),
        })
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        (
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            Json(json!([{ "message": e.message, "errorCode": e.code, "fields": e.fields }])),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// `v62.0` → `62.0`, or 404 for anything else.
fn version(path_version: &str) -> Result<String, ApiError> {
    path_version
        .strip_prefix('v')
        .filter(|v| v.contains('.') && v.parse::<f64>().is_ok_and(|n| n >= OLDEST_VERSION))
        .map(str::to_string)
        .ok_or_else(|| WriteError::not_found().into())
}

/// Rejects requests without a valid bearer token: 401 `INVALID_SESSION_ID` "Session
/// expired or invalid" (REST API Developer Guide, "Status Codes and Error Responses").
async fn require_session(
    State(shared): State<Arc<Shared>>,
    mut req: Request,
    next: Next,
) -> Response {
    let user = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .and_then(|token| {
            shared
                .sessions
                .lock()
                .expect("sessions")
                .user_of(token.trim())
        });
    match user {
        Some(user) => {
            req.extensions_mut().insert(Caller(user));
            next.run(req).await
        }
        None => {
            ApiError::new(401, "INVALID_SESSION_ID", "Session expired or invalid").into_response()
        }
    }
}

/// The data API routes.
pub fn router(shared: Arc<Shared>) -> Router {
    // Salesforce also answers these resources with a trailing slash, and widely used
    // clients send it: simple-salesforce 1.12.10 (api.py) queries `…/query/?q=` and
    // `…/queryAll/?q=` and creates with `POST …/sobjects/{object}/`.
    let authed = Router::new()
        .route("/services/data/{version}/", get(resources))
        .route("/services/data/{version}/query", get(run_query))
        .route("/services/data/{version}/query/", get(run_query))
        .route("/services/data/{version}/queryAll", get(run_query_all))
        .route("/services/data/{version}/queryAll/", get(run_query_all))
        .route("/services/data/{version}/query/{locator}", get(query_more))
        .route(
            "/services/data/{version}/queryAll/{locator}",
            get(query_more),
        )
        .route("/services/data/{version}/sobjects", get(global_describe))
        .route("/services/data/{version}/sobjects/", get(global_describe))
        .route("/services/data/{version}/sobjects/{object}", post(create))
        .route("/services/data/{version}/sobjects/{object}/", post(create))
        .route(
            "/services/data/{version}/sobjects/{object}/describe",
            get(describe),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/{id}",
            get(get_record).patch(update_record).delete(delete_record),
        )
        .route(
            "/services/data/{version}/composite/sobjects",
            patch(update_collection),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            require_session,
        ));
    Router::new()
        .route("/services/data", get(versions))
        .route("/services/data/", get(versions))
        .merge(authed)
        .layer(axum::middleware::from_fn(request_size_limits))
        .with_state(shared)
}

/// Most bytes of URI and headers together in one REST call. Salesforce Help, "Maximum
/// number of rows returned by SOQL queries over the REST API" (article 000386264): "In
/// each REST call, the maximum length for the combined URI and headers is 16,384 bytes. A
/// request exceeding this limit returns a 431 Request Header Fields Too Large error. If
/// the URI itself exceeds this limit, the request returns a 414 URI Too Long error."
pub const MAX_URI_AND_HEADERS: usize = 16_384;

/// Refuses a request whose URI, or URI and headers, are longer than Salesforce takes.
async fn request_size_limits(req: Request, next: Next) -> Response {
    let uri = req.uri().to_string().len();
    let headers: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    if uri > MAX_URI_AND_HEADERS {
        return (StatusCode::URI_TOO_LONG, "URI Too Long").into_response();
    }
    if uri + headers > MAX_URI_AND_HEADERS {
        return (
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "Request Header Fields Too Large",
        )
            .into_response();
    }
    next.run(req).await
}

/// `GET /services/data` (no authentication needed, as on Salesforce).
async fn versions() -> Response {
    Json(
        VERSIONS
            .iter()
            .map(|(v, label)| {
                json!({"label": label, "url": format!("/services/data/v{v}"), "version": v})
            })
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn resources(Path(v): Path<String>) -> ApiResult {
    let v = version(&v)?;
    Ok(Json(json!({
        "sobjects": format!("/services/data/v{v}/sobjects"),
        "query": format!("/services/data/v{v}/query"),
        "queryAll": format!("/services/data/v{v}/queryAll"),
        "composite": format!("/services/data/v{v}/composite"),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct QueryString {
    q: Option<String>,
}

async fn run_query(
    State(shared): State<Arc<Shared>>,
    Path(v): Path<String>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<QueryString>,
) -> ApiResult {
    execute_query(&shared, &v, params.q, false, requested_batch_size(&headers))
}

async fn run_query_all(
    State(shared): State<Arc<Shared>>,
    Path(v): Path<String>,
    headers: HeaderMap,
    QueryParams(params): QueryParams<QueryString>,
) -> ApiResult {
    execute_query(&shared, &v, params.q, true, requested_batch_size(&headers))
}

/// Smallest and largest `batchSize` the Query Options header takes.
const QUERY_BATCH_RANGE: (usize, usize) = (200, 2000);

/// The `batchSize` of a `Sforce-Query-Options: batchSize=N` request header, clamped to
/// 200..=2000. Source: REST API Developer Guide, "Query Options Header": "The default is
/// 2,000; the minimum is 200, and the maximum is 2,000. There is no guarantee that the
/// requested batch size is the actual batch size."
fn requested_batch_size(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("sforce-query-options")?.to_str().ok()?;
    value.split(',').find_map(|option| {
        let (name, n) = option.split_once('=')?;
        let n = n.trim().parse::<usize>().ok()?;
        name.trim()
            .eq_ignore_ascii_case("batchSize")
            .then(|| n.clamp(QUERY_BATCH_RANGE.0, QUERY_BATCH_RANGE.1))
    })
}

fn execute_query(
    shared: &Shared,
    v: &str,
    soql: Option<String>,
    include_deleted: bool,
    requested_batch: Option<usize>,
) -> ApiResult {
    let v = version(v)?;
    let soql = soql.filter(|q| !q.trim().is_empty()).ok_or_else(|| {
        ApiError::new(400, "MALFORMED_QUERY", "A query string has to be specified")
    })?;
    let mut org = shared.org.lock().expect("org");
    let rows = query::parse(&soql)
        .and_then(|q| query::execute(&q, &*org, include_deleted, &v, chrono::Utc::now()))
        .map_err(|e| ApiError::new(400, e.code, e.message))?;
    // The org's own batch size (a test knob) caps what the request asked for.
    let batch = requested_batch
        .map_or(org.batch_size, |n| n.min(org.batch_size))
        .max(1);
    let total = rows.len();
    if total <= batch {
        return Ok(
            Json(json!({"totalSize": total, "done": true, "records": rows})).into_response(),
        );
    }
    let first: Vec<_> = rows[..batch].to_vec();
    let cursor = org.open_cursor(rows, batch);
    Ok(Json(json!({
        "totalSize": total,
        "done": false,
        "nextRecordsUrl": format!("/services/data/v{v}/query/{cursor}-{batch}"),
        "records": first,
    }))
    .into_response())
}

/// `GET …/query/{cursor}-{offset}`: the next batch of an earlier query.
async fn query_more(
    State(shared): State<Arc<Shared>>,
    Path((v, locator)): Path<(String, String)>,
) -> ApiResult {
    let v = version(&v)?;
    let invalid = || ApiError::new(400, "INVALID_QUERY_LOCATOR", "invalid query locator");
    let (cursor_id, offset) = locator
        .rsplit_once('-')
        .and_then(|(c, o)| o.parse::<usize>().ok().map(|o| (c.to_string(), o)))
        .ok_or_else(invalid)?;
    let mut org = shared.org.lock().expect("org");
    let cursor = org.cursor(&cursor_id).ok_or_else(invalid)?;
    let batch = cursor.batch;
    let total = cursor.rows.len();
    if offset > total {
        return Err(invalid());
    }
    let end = (offset + batch).min(total);
    let page: Vec<_> = cursor.rows[offset..end].to_vec();
    if end < total {
        return Ok(Json(json!({
            "totalSize": total,
            "done": false,
            "nextRecordsUrl": format!("/services/data/v{v}/query/{cursor_id}-{end}"),
            "records": page,
        }))
        .into_response());
    }
    org.close_cursor(&cursor_id);
    Ok(Json(json!({"totalSize": total, "done": true, "records": page})).into_response())
}

async fn global_describe(State(shared): State<Arc<Shared>>, Path(v): Path<String>) -> ApiResult {
    let v = version(&v)?;
    let org = shared.org.lock().expect("org");
    let sobjects: Vec<Value> = org
        .objects()
        .iter()
        .map(|o| {
            json!({
                "name": o.name,
                "label": o.label,
                "keyPrefix": o.key_prefix,
                "custom": o.name.ends_with("__c"),
                "queryable": true,
                "urls": {
                    "sobject": format!("/services/data/v{v}/sobjects/{}", o.name),
                    "describe": format!("/services/data/v{v}/sobjects/{}/describe", o.name),
                },
            })
        })
        .collect();
    Ok(
        Json(json!({"encoding": "UTF-8", "maxBatchSize": 200, "sobjects": sobjects}))
            .into_response(),
    )
}

async fn describe(
    State(shared): State<Arc<Shared>>,
    Path((v, object)): Path<(String, String)>,
) -> ApiResult {
    let v = version(&v)?;
    let org = shared.org.lock().expect("org");
    let def = org.object(&object).ok_or_else(WriteError::not_found)?;
    Ok(Json(def.describe(&v)).into_response())
}

#[derive(Deserialize)]
struct FieldsParam {
    fields: Option<String>,
}

async fn get_record(
    State(shared): State<Arc<Shared>>,
    Path((v, object, id)): Path<(String, String, String)>,
    QueryParams(params): QueryParams<FieldsParam>,
) -> ApiResult {
    let v = version(&v)?;
    let org = shared.org.lock().expect("org");
    let def = org.object(&object).ok_or_else(WriteError::not_found)?;
    let row = org.live(&def.name, &id).ok_or_else(WriteError::not_found)?;
    let row_id = row.get("Id").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    out.insert("attributes".into(), attributes(&def.name, row_id, &v));
    match params.fields {
        None => out.extend(row.clone()),
        Some(list) => {
            for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                let field = def.field(name).ok_or_else(|| {
                    ApiError::new(
                        400,
                        "INVALID_FIELD",
                        format!(
                            "No such column '{name}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.",
                            def.name
                        ),
                    )
                })?;
                out.insert(
                    field.name.clone(),
                    row.get(&field.name).cloned().unwrap_or(Value::Null),
                );
            }
        }
    }
    Ok(Json(Value::Object(out)).into_response())
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::new(
            400,
            "JSON_PARSER_ERROR",
            "The request body must be a JSON object",
        )),
    }
}

async fn update_record(
    State(shared): State<Arc<Shared>>,
    Path((v, object, id)): Path<(String, String, String)>,
    Extension(Caller(user)): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult {
    version(&v)?;
    let fields = json_object(&body)?;
    let mut org = shared.org.lock().expect("org");
    org.update(&object, &id, &fields, &user, true)?;
    org.commit();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn create(
    State(shared): State<Arc<Shared>>,
    Path((v, object)): Path<(String, String)>,
    Extension(Caller(user)): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult {
    version(&v)?;
    let fields = json_object(&body)?;
    let mut org = shared.org.lock().expect("org");
    let id = org.create(&object, &fields, &user)?;
    org.commit();
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "success": true, "errors": []})),
    )
        .into_response())
}

async fn delete_record(
    State(shared): State<Arc<Shared>>,
    Path((v, object, id)): Path<(String, String, String)>,
    Extension(Caller(user)): Extension<Caller>,
) -> ApiResult {
    version(&v)?;
    let mut org = shared.org.lock().expect("org");
    org.delete(&object, &id, &user)?;
    org.commit();
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// One record's failure in a collection result.
fn save_failure(code: &str, message: &str, fields: &[String]) -> Value {
    json!({"success": false, "errors": [{"statusCode": code, "message": message, "fields": fields}]})
}

/// Applies one record of a collection; `Ok(id)` or the per-record error.
fn update_one(
    org: &mut super::store::Org,
    record: &Value,
    user: &str,
) -> Result<String, (String, String, Vec<String>)> {
    let fail = |code: &str, message: String, fields: &[&str]| {
        (
            code.to_string(),
            message,
            fields.iter().map(|f| f.to_string()).collect(),
        )
    };
    let mut fields = record
        .as_object()
        .cloned()
        .ok_or_else(|| fail("JSON_PARSER_ERROR", "record must be an object".into(), &[]))?;
    let object = fields
        .remove("attributes")
        .and_then(|a| a.get("type").and_then(Value::as_str).map(str::to_string))
        .ok_or_else(|| {
            fail(
                "INVALID_TYPE",
                "Must send a concrete entity type.".into(),
                &[],
            )
        })?;
    let id = fields
        .remove("id")
        .or_else(|| fields.remove("Id"))
        .and_then(|v| v.as_str().map(str::to_string))
        .ok_or_else(|| {
            fail(
                "MISSING_ARGUMENT",
                "Id not specified in an update call".into(),
                &["Id"],
            )
        })?;
    // Per-record codes as in the sObject Collections examples: MALFORMED_ID "malformed id
    // …" with fields ["Id"].
    let id = RecordId::parse(&id)
        .map_err(|_| fail("MALFORMED_ID", format!("malformed id {id}"), &["Id"]))?;
    org.update(&object, id.as_str(), &fields, user, true)
        .map_err(|e| {
            if e.code == "NOT_FOUND" {
                fail(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id".into(),
                    &[],
                )
            } else {
                (e.code, e.message, e.fields)
            }
        })?;
    Ok(id.to_string())
}

/// `PATCH /composite/sobjects`: one transaction; with `allOrNone: false` each record
/// succeeds or fails on its own, with `true` any failure rolls back every record.
async fn update_collection(
    State(shared): State<Arc<Shared>>,
    Path(v): Path<String>,
    Extension(Caller(user)): Extension<Caller>,
    body: axum::body::Bytes,
) -> ApiResult {
    version(&v)?;
    let body = json_object(&body)?;
    let records = body
        .get("records")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::new(400, "JSON_PARSER_ERROR", "records is required"))?;
    if records.len() > COLLECTION_LIMIT {
        return Err(ApiError::new(
            400,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ));
    }
    let all_or_none = body
        .get("allOrNone")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut org = shared.org.lock().expect("org");
    let savepoint = all_or_none.then(|| org.savepoint());
    let mut results = Vec::with_capacity(records.len());
    let mut failed = false;
    for record in records {
        match update_one(&mut org, record, &user) {
            Ok(id) => results.push(json!({"id": id, "success": true, "errors": []})),
            Err((code, message, fields)) => {
                failed = true;
                results.push(save_failure(&code, &message, &fields));
            }
        }
    }
    match savepoint {
        Some(savepoint) if failed => {
            org.rollback(savepoint);
            for r in results.iter_mut().filter(|r| r["success"] == json!(true)) {
                *r = save_failure(
                    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "Record rolled back because not all records were valid and the request was using AllOrNone header",
                    &[],
                );
            }
        }
        _ => org.commit(),
    }
    Ok(Json(results).into_response())
}
