//! Request extractors: the authenticated caller, JSON bodies and query strings whose
//! rejections become problem+json naming the offending field, and pagination.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::{ApiError, AppState};
use crate::auth::Principal;
use crate::db::Order;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// Refuses customers: for operator-only resources, whose existence is no secret.
pub fn require_operator(who: &Principal) -> Result<(), ApiError> {
    if who.is_operator() { Ok(()) } else { Err(ApiError::Forbidden) }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header =
            parts.headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token =
            header.and_then(|h| h.strip_prefix("Bearer ")).map(str::trim).filter(|t| !t.is_empty());
        let principal = match token {
            Some(token) => state.db.authenticate(token).await?,
            None => None,
        };
        match principal {
            Some(p) => Ok(Caller(p)),
            None => {
                state
                    .metrics
                    .counter(
                        "bramble_api_auth_failures_total",
                        "Requests refused for a missing or invalid token",
                    )
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// A JSON body; syntax errors are 400, type and missing-field errors are 422 naming the
/// field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(field_error(&e.body_text())),
            Err(e) => Err(ApiError::MalformedBody(e.body_text())),
        }
    }
}

/// Query parameters, with errors naming the parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                Err(field_error(&e.body_text()))
            }
            Err(e) => Err(ApiError::MalformedBody(e.body_text())),
        }
    }
}

/// Turns serde's "…: field.path: message" into a field error.
fn field_error(text: &str) -> ApiError {
    let rest = text.split_once("target type: ").map(|(_, r)| r).unwrap_or(text);
    let rest = rest.strip_prefix("Failed to deserialize query string: ").unwrap_or(rest);
    if let Some(field) = missing_field(rest) {
        return ApiError::invalid(&field, "is required");
    }
    match rest.split_once(": ") {
        // A field of an internally tagged enum (`credentials`) has no path of its own:
        // its error names it first (`credentials: auth_protocol: unknown …`).
        Some((field, msg)) if !field.contains(' ') => match msg.split_once(": ") {
            Some((inner, msg)) if is_field_name(inner) => {
                ApiError::invalid(&format!("{field}.{inner}"), msg)
            }
            _ => ApiError::invalid(field, msg),
        },
        _ => ApiError::invalid("body", rest),
    }
}

fn is_field_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn missing_field(text: &str) -> Option<String> {
    let start = text.find("missing field `")? + "missing field `".len();
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_string())
}

/// The page size of a list: 1-500, 100 when not given.
pub fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=500) => Ok(n),
        Some(n) => Err(ApiError::invalid("limit", format!("must be between 1 and 500, got {n}"))),
    }
}

/// A `cursor` that continues a list keyed by IDs with `prefix` (`pi`, `job`): the
/// `next_cursor` of the previous page, which is an ID.
pub fn id_cursor(raw: Option<String>, prefix: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let key = raw.strip_prefix(prefix).and_then(|r| r.strip_prefix('-'));
    let well_formed = key.is_some_and(|k| {
        (1..=64).contains(&k.len())
            && k.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    });
    if well_formed {
        Ok(Some(raw))
    } else {
        Err(ApiError::bad_parameter(
            "cursor",
            format!("not a cursor of this list (a {prefix}- ID from next_cursor)"),
        ))
    }
}

/// The `order` of a job or event list: newest first unless `asc` is asked for.
pub fn list_order(raw: Option<String>) -> Result<Order, ApiError> {
    match raw.as_deref() {
        None => Ok(Order::Desc),
        Some(s) => {
            Order::parse(s).ok_or_else(|| ApiError::bad_parameter("order", "must be asc or desc"))
        }
    }
}

/// A `cursor` that continues an event list: an event id from `next_cursor`.
pub fn event_cursor(raw: Option<String>) -> Result<Option<i64>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    match raw.parse::<i64>() {
        Ok(id) if id >= 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(id)),
        _ => Err(ApiError::bad_parameter(
            "cursor",
            "not a cursor of this list (an event id from next_cursor)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_become_field_errors() {
        let e = field_error(
            "Failed to deserialize the JSON body into the target type: ssh_keys[0]: invalid type: integer `3`, expected a string at line 1 column 30",
        );
        match e {
            ApiError::Invalid(errs) => assert_eq!(errs[0].field, "ssh_keys[0]"),
            other => panic!("{other:?}"),
        }
        match field_error(
            "Failed to deserialize the JSON body into the target type: missing field `image` at line 1 column 2",
        ) {
            ApiError::Invalid(errs) => assert_eq!(
                (errs[0].field.as_str(), errs[0].message.as_str()),
                ("image", "is required")
            ),
            other => panic!("{other:?}"),
        }
        match field_error(
            "Failed to deserialize the JSON body into the target type: credentials: auth_protocol: unknown protocol \"x\" at line 1 column 9",
        ) {
            ApiError::Invalid(errs) => assert_eq!(
                (errs[0].field.as_str(), errs[0].message.as_str()),
                ("credentials.auth_protocol", "unknown protocol \"x\" at line 1 column 9")
            ),
            other => panic!("{other:?}"),
        }
    }
}
