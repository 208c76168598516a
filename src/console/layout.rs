//! The frame every console page shares (head, navigation, sign-out) and the small formatting
//! helpers the pages use for times, durations and hashes.

use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use maud::{html, Markup, DOCTYPE};
use time::macros::format_description;
use time::OffsetDateTime;

use super::assets;
use super::session::Admin;

pub(super) const HOME: &str = "/console";
pub(super) const SIGN_IN: &str = "/console/sign-in";

/// The navigation, in order. A new page (reconciliation, audit) adds its entry here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Nav {
    Overview,
    Users,
    Failures,
    Deliveries,
    Mappings,
    Reconcile,
    Held,
    Audit,
}

const NAV: &[(Nav, &str, &str)] = &[
    (Nav::Overview, "/console", "Overview"),
    (Nav::Users, "/console/users", "Users"),
    (Nav::Failures, "/console/failures", "Failures"),
    (Nav::Deliveries, "/console/deliveries", "Deliveries"),
    (Nav::Mappings, "/console/mappings", "Mappings"),
    (Nav::Reconcile, "/console/reconcile", "Reconcile"),
    (Nav::Held, "/console/held", "Held"),
    (Nav::Audit, "/console/audit", "Audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            // htmx would otherwise add an inline style element, which the CSP forbids.
            meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false}"#;
            title { (title) " · scim-bridge console" }
            link rel="stylesheet" href=(assets::STYLESHEET);
            script src=(assets::HTMX) defer {}
        }
    }
}

/// A full page for a signed-in admin.
pub(super) fn page(title: &str, admin: &Admin, current: Nav, body: Markup) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href=(HOME) { "scim-bridge" }
                    nav {
                        @for (nav, href, label) in NAV {
                            @if *nav == current {
                                a.current href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    form.signout method="post" action="/console/sign-out" {
                        input type="hidden" name="csrf" value=(admin.csrf);
                        span.who { (admin.client) }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

pub(super) fn html_response(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(markup.into_string())
}

pub(super) fn sign_in(problem: Option<&str>, status: StatusCode) -> HttpResponse {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Sign in"))
            body.signin {
                main {
                    h1 { "scim-bridge console" }
                    @if let Some(problem) = problem {
                        p.problem role="alert" { (problem) }
                    }
                    form method="post" action=(SIGN_IN) {
                        label for="token" { "Admin token" }
                        input #token type="password" name="token" autocomplete="off" required autofocus;
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "Any token of " code { "[[admin.clients]]" } " signs in; SCIM tokens do not." }
                }
            }
        }
    };
    html_response(status, markup)
}

pub(super) fn error_page(status: StatusCode, detail: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("Error"))
            body {
                main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                    p.problem role="alert" { (detail) }
                    p { a href=(HOME) { "Back to the console" } }
                }
            }
        }
    }
}

/// A notice after an action, carried in the redirect's query string.
pub(super) fn notice(text: Option<&str>) -> Markup {
    html! {
        @if let Some(text) = text {
            p.notice role="status" { (text) }
        }
    }
}

/// Unix milliseconds as a UTC time an admin reads.
pub(super) fn when(millis: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|at| {
            at.format(format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| millis.to_string())
}

/// A duration in the largest unit that keeps it short: "45 s", "12 min", "3 h", "2 d".
pub(super) fn span(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    match seconds {
        0..=119 => format!("{seconds} s"),
        120..=7199 => format!("{} min", seconds / 60),
        7200..=172_799 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    }
}

/// The first 12 hex digits of a hash: enough to tell versions apart on screen.
pub(super) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Pretty JSON for a `<pre>`; maud escapes it.
pub(super) fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_one_short_unit() {
        for (millis, shown) in [
            (-5, "0 s"),
            (59_000, "59 s"),
            (150_000, "2 min"),
            (3 * 3_600_000, "3 h"),
            (3 * 86_400_000, "3 d"),
        ] {
            assert_eq!(span(millis), shown, "{millis}");
        }
        assert_eq!(when(0), "1970-01-01 00:00:00 UTC");
    }
}
