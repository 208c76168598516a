//! Parsing of what arrives with a SCIM request: the JSON body (size-limited, either SCIM or
//! plain JSON content type), list and search parameters, and ETag preconditions.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header::{self, HeaderMap};
use actix_web::http::StatusCode;
use actix_web::{web, FromRequest, HttpRequest};
use serde_json::Value;

use crate::config::{ScimSettings, TrustedProxies};
use crate::scim::error::ScimError;
use crate::scim::filter;
use crate::scim::path::{parse_attr_path, AttrPath};
use crate::scim::projection::{check_list_length, parse_attribute_list};
use crate::scim::service::{ListQuery, Precondition};

pub(crate) const SEARCH_REQUEST_SCHEMA: &str =
    "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// A request body parsed as JSON, with SCIM errors for every way that can fail.
pub(crate) struct ScimBody(pub Value);

impl FromRequest for ScimBody {
    type Error = ScimError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if let Some(content_type) = content_type {
                let essence = content_type.split(';').next().unwrap_or_default().trim();
                if !(essence.ends_with("/json") || essence.ends_with("+json")) {
                    return Err(ScimError::UnsupportedMediaType(format!(
                        "Content-Type {essence} is not accepted: send application/scim+json or application/json"
                    )));
                }
            }
            let bytes = bytes.await.map_err(|err| {
                if err.as_response_error().status_code() == StatusCode::PAYLOAD_TOO_LARGE {
                    ScimError::PayloadTooLarge(
                        "the request body is larger than this server accepts".into(),
                    )
                } else {
                    ScimError::InvalidSyntax(format!("cannot read the request body: {err}"))
                }
            })?;
            if bytes.is_empty() {
                return Err(ScimError::InvalidSyntax("the request body is empty".into()));
            }
            serde_json::from_slice(&bytes).map(ScimBody).map_err(|err| {
                ScimError::InvalidSyntax(format!("the body is not valid JSON: {err}"))
            })
        })
    }
}

/// Which attributes to return, from `attributes` / `excludedAttributes`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Projection {
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    pub(crate) fn from_query(req: &HttpRequest) -> Result<Projection, ScimError> {
        let params = query_pairs(req)?;
        projection_from(&params)
    }
}

fn projection_from(params: &[(String, String)]) -> Result<Projection, ScimError> {
    Ok(Projection {
        attributes: match param(params, "attributes") {
            Some(list) => parse_attribute_list(list)?,
            None => Vec::new(),
        },
        excluded: match param(params, "excludedattributes") {
            Some(list) => parse_attribute_list(list)?,
            None => Vec::new(),
        },
    })
}

/// Query parameters as pairs; names are matched case-insensitively by `param`.
fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ScimError> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|err| ScimError::InvalidSyntax(format!("malformed query string: {err}")))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

/// A list (`GET /Users?...`) or search (`POST /Users/.search`) request.
#[derive(Debug, Clone)]
pub(crate) struct ListRequest {
    pub query: ListQuery,
    pub projection: Projection,
}

impl ListRequest {
    pub(crate) fn from_query(
        req: &HttpRequest,
        limits: &ScimSettings,
    ) -> Result<ListRequest, ScimError> {
        let params = query_pairs(req)?;
        let raw = RawList {
            filter: param(&params, "filter").map(str::to_owned),
            sort_by: param(&params, "sortby").map(str::to_owned),
            sort_order: param(&params, "sortorder").map(str::to_owned),
            start_index: parse_number(param(&params, "startindex"), "startIndex")?,
            count: parse_number(param(&params, "count"), "count")?,
        };
        raw.into_request(projection_from(&params)?, limits)
    }

    pub(crate) fn from_search(
        body: &Value,
        limits: &ScimSettings,
    ) -> Result<ListRequest, ScimError> {
        let Value::Object(map) = body else {
            return Err(ScimError::InvalidSyntax(
                "a search request must be a JSON object".into(),
            ));
        };
        let get = |name: &str| {
            map.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value)
        };
        let schemas_ok = get("schemas").and_then(Value::as_array).is_some_and(|s| {
            s.iter().any(|u| {
                u.as_str()
                    .is_some_and(|u| u.eq_ignore_ascii_case(SEARCH_REQUEST_SCHEMA))
            })
        });
        if !schemas_ok {
            return Err(ScimError::InvalidSyntax(format!(
                "a search request must list the schema {SEARCH_REQUEST_SCHEMA}"
            )));
        }
        let text = |name: &str| -> Result<Option<String>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(ScimError::InvalidValue(format!(
                    "\"{name}\" must be a string"
                ))),
            }
        };
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                    ScimError::InvalidValue(format!("\"{name}\" must be an integer"))
                }),
                Some(Value::String(s)) => parse_number(Some(s), name),
                Some(_) => Err(ScimError::InvalidValue(format!(
                    "\"{name}\" must be an integer"
                ))),
            }
        };
        let list = |name: &str| -> Result<Vec<AttrPath>, ScimError> {
            match get(name) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => check_list_length(items.len()).and_then(|()| {
                    items
                        .iter()
                        .map(|item| {
                            item.as_str()
                                .ok_or_else(|| {
                                    ScimError::InvalidValue(format!("\"{name}\" must list strings"))
                                })
                                .and_then(parse_attr_path)
                        })
                        .collect()
                }),
                Some(Value::String(s)) => parse_attribute_list(s),
                Some(_) => Err(ScimError::InvalidValue(format!(
                    "\"{name}\" must be a list of attribute names"
                ))),
            }
        };
        let raw = RawList {
            filter: text("filter")?,
            sort_by: text("sortBy")?,
            sort_order: text("sortOrder")?,
            start_index: number("startIndex")?,
            count: number("count")?,
        };
        let projection = Projection {
            attributes: list("attributes")?,
            excluded: list("excludedAttributes")?,
        };
        raw.into_request(projection, limits)
    }
}

struct RawList {
    filter: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
}

impl RawList {
    fn into_request(
        self,
        projection: Projection,
        limits: &ScimSettings,
    ) -> Result<ListRequest, ScimError> {
        let filter = match self.filter.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(filter::parse(text)?),
        };
        let sort_by = match self.sort_by.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_attr_path(text)?),
        };
        let descending = match self.sort_order.as_deref().map(str::trim) {
            None | Some("") => false,
            Some(order) if order.eq_ignore_ascii_case("ascending") => false,
            Some(order) if order.eq_ignore_ascii_case("descending") => true,
            Some(order) => {
                return Err(ScimError::InvalidValue(format!(
                    "sortOrder must be \"ascending\" or \"descending\", not \"{order}\""
                )))
            }
        };
        // RFC 7644 3.4.2.4: a startIndex below 1 means 1, a negative count means 0.
        let start_index = self.start_index.unwrap_or(1).max(1) as u64;
        let count = match self.count {
            None => limits.default_page_size as u64,
            Some(count) => (count.max(0) as u64).min(limits.max_page_size as u64),
        };
        Ok(ListRequest {
            query: ListQuery {
                filter,
                sort_by,
                descending,
                start_index,
                count,
            },
            projection,
        })
    }
}

fn parse_number(value: Option<&str>, name: &str) -> Result<Option<i64>, ScimError> {
    value
        .map(|v| {
            v.trim().parse::<i64>().map_err(|_| {
                ScimError::InvalidValue(format!("{name} must be an integer, not \"{v}\""))
            })
        })
        .transpose()
}

pub(crate) fn if_match(headers: &HeaderMap) -> Option<Precondition> {
    header_text(headers, header::IF_MATCH).map(|value| Precondition::parse(&value))
}

pub(crate) fn if_none_match(headers: &HeaderMap) -> Option<Precondition> {
    header_text(headers, header::IF_NONE_MATCH).map(|value| Precondition::parse(&value))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

/// The base URL of the SCIM API as the client addressed it, for `meta.location`. The
/// `Forwarded` / `X-Forwarded-Host` / `-Proto` headers count only from a trusted proxy;
/// from anyone else the `Host` header and this listener's own scheme do.
pub(crate) fn base_url(req: &HttpRequest) -> String {
    let trusted = match (req.app_data::<web::Data<TrustedProxies>>(), req.peer_addr()) {
        (Some(proxies), Some(peer)) => proxies.trusts(peer.ip()),
        _ => false,
    };
    if trusted {
        let info = req.connection_info();
        return format!("{}://{}/scim/v2", info.scheme(), info.host());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or_else(|| req.app_config().host());
    let scheme = if req.app_config().secure() {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}/scim/v2")
}
