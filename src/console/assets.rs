//! The console's stylesheet and script, embedded in the binary and served under
//! `/console/assets/`. htmx is vendored as released (version in its file name, licence
//! beside it in `assets/`).

use actix_web::http::header;
use actix_web::{web, HttpResponse};

pub(super) const STYLESHEET: &str = "/console/assets/console.css";
pub(super) const HTMX: &str = "/console/assets/htmx-2.0.11.min.js";

const CSS: &str = include_str!("assets/console.css");
const HTMX_JS: &str = include_str!("assets/htmx-2.0.11.min.js");

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/assets/{name}", web::get().to(asset));
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    let (content_type, body) = match name.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "htmx-2.0.11.min.js" => ("text/javascript; charset=utf-8", HTMX_JS),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(content_type)
        // The names change with the content (htmx's carries its version), so a day is safe.
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(body)
}
