//! Fault injection in front of every emulator's API routes (never the `/_sandbox` control
//! endpoint): latency, server errors, throttling, broken answers and a "down" switch. The
//! per-second rate limit of APIs that have one is enforced here too.

use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::RETRY_AFTER;
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::web::{self, Bytes};
use actix_web::{HttpResponse, ResponseError};
use futures_util::StreamExt;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::emulator::{EmulatorState, Refusal};

/// The faults one emulator injects; all off by default. Set them in the sandbox config, with
/// `PUT /_sandbox/faults`, or through the test handle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every answer.
    pub latency_ms: u64,
    /// The share of requests (0.0 to 1.0) answered 500 or 503, half and half.
    pub server_error_share: f64,
    /// Every request is answered 429.
    pub throttle: bool,
    /// Sent as `Retry-After` with injected 429s and 503s: seconds or an HTTP date. None
    /// when absent.
    pub retry_after: Option<String>,
    /// Every request is answered 200 with a body that breaks off, as when a connection drops
    /// mid-answer.
    pub drop_connection: bool,
    /// The target is down: every request is answered 503 (the listener stays up, so the
    /// control endpoint keeps working).
    pub down: bool,
}

/// The middleware: decides, before the vendor's handler runs, whether a fault answers
/// instead.
pub(crate) async fn inject(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<EmulatorState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let faults = state.arrive();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    match fault_answer(&state, &faults, req.request()) {
        Some(answer) => Ok(req.into_response(answer)),
        None => Ok(next.call(req).await?.map_into_boxed_body()),
    }
}

fn fault_answer(
    state: &EmulatorState,
    faults: &Faults,
    req: &actix_web::HttpRequest,
) -> Option<HttpResponse> {
    let refuse = |status, message| state.refuse(status, message, req);
    if faults.down {
        return Some(
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "sandbox: the target is down",
            )
            .error_response(),
        );
    }
    if state.over_rate_limit() {
        // The vendors with a limit name no wait: callers must back off on their own.
        return Some(refuse(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded").error_response());
    }
    if faults.throttle {
        let refusal = refuse(StatusCode::TOO_MANY_REQUESTS, "sandbox: too many requests");
        return Some(with_retry_after(refusal, faults));
    }
    let roll: f64 = rand::thread_rng().gen();
    if roll < faults.server_error_share {
        return Some(if roll < faults.server_error_share / 2.0 {
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "sandbox: injected server error",
            )
            .error_response()
        } else {
            with_retry_after(
                refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "sandbox: injected unavailability",
                ),
                faults,
            )
        });
    }
    faults.drop_connection.then(broken_answer)
}

fn with_retry_after(refusal: Refusal, faults: &Faults) -> HttpResponse {
    let mut answer = refusal.error_response();
    if let Some(value) = &faults.retry_after {
        if let Ok(value) = value.parse() {
            answer.headers_mut().insert(RETRY_AFTER, value);
        }
    }
    answer
}

/// A 200 whose streamed body fails after its first bytes: the server then cuts the
/// connection, and the client sees a truncated answer. The pause lets the status line and
/// the first chunk reach the client before the cut.
fn broken_answer() -> HttpResponse {
    let chunks = futures_util::stream::iter([true, false]).then(|first| async move {
        if first {
            Ok(Bytes::from_static(b"{\"data\": ["))
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "sandbox: connection dropped",
            ))
        }
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(chunks)
}
