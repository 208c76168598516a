//! Bad input of each kind gets a clear RFC 7644 error, and changes nothing.

use reqwest::Method;
use serde_json::json;

use crate::support::{assert_scim_error, json_of, user, TestApp, TOKEN};

#[tokio::test]
async fn malformed_and_mistyped_bodies() {
    let app = TestApp::spawn().await;
    let raw = |body: &'static str| {
        app.request(Method::POST, "/Users")
            .header("Content-Type", "application/scim+json")
            .body(body)
            .send()
    };
    assert_scim_error(raw("{not json").await.unwrap(), 400, Some("invalidSyntax")).await;
    assert_scim_error(raw("").await.unwrap(), 400, Some("invalidSyntax")).await;
    assert_scim_error(raw("[1, 2]").await.unwrap(), 400, Some("invalidSyntax")).await;

    let no_schemas = json!({"userName": "x"});
    assert_scim_error(
        app.post("/Users", &no_schemas).await,
        400,
        Some("invalidSyntax"),
    )
    .await;

    let unknown_schema = json!({"schemas": ["urn:example:unknown"], "userName": "x"});
    assert_scim_error(
        app.post("/Users", &unknown_schema).await,
        400,
        Some("invalidSyntax"),
    )
    .await;

    let mut wrong_type = user("typed");
    wrong_type["active"] = json!("sometimes");
    assert_scim_error(
        app.post("/Users", &wrong_type).await,
        400,
        Some("invalidValue"),
    )
    .await;

    let mut wrong_type = user("typed");
    wrong_type["name"] = json!(42);
    assert_scim_error(
        app.post("/Users", &wrong_type).await,
        400,
        Some("invalidValue"),
    )
    .await;

    let missing_name = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"]});
    assert_scim_error(
        app.post("/Users", &missing_name).await,
        400,
        Some("invalidValue"),
    )
    .await;

    let text = app
        .request(Method::POST, "/Users")
        .header("Content-Type", "text/plain")
        .body(user("x").to_string())
        .send()
        .await
        .unwrap();
    assert_scim_error(text, 415, None).await;

    let list = json_of(app.get("/Users").await, 200).await;
    assert_eq!(list["totalResults"], 0, "nothing was created");
}

#[tokio::test]
async fn read_only_attributes_are_ignored_on_create() {
    let app = TestApp::spawn().await;
    let mut body = user("ro");
    body["id"] = json!("chosen-by-client");
    body["meta"] = json!({"created": "1999-01-01T00:00:00Z"});
    let created = app.create_user(&body).await;
    assert_ne!(created["id"], "chosen-by-client");
    assert_ne!(created["meta"]["created"], "1999-01-01T00:00:00Z");
}

#[tokio::test]
async fn bad_patch_requests() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("patchy")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    let op = |ops: serde_json::Value| json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let cases = [
        (
            json!({"Operations": [{"op": "add", "path": "displayName", "value": "x"}]}),
            400,
            "invalidSyntax",
        ),
        (
            op(json!([{"op": "jump", "path": "displayName", "value": "x"}])),
            400,
            "invalidSyntax",
        ),
        (
            op(json!([{"op": "add", "path": "nosuch.attr[", "value": "x"}])),
            400,
            "invalidPath",
        ),
        (op(json!([{"op": "remove"}])), 400, "noTarget"),
        (
            op(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}])),
            400,
            "noTarget",
        ),
        (
            op(json!([{"op": "replace", "path": "active", "value": "perhaps"}])),
            400,
            "invalidValue",
        ),
        (
            op(json!([{"op": "replace", "path": "meta.created", "value": "2000-01-01T00:00:00Z"}])),
            400,
            "mutability",
        ),
    ];
    for (body, status, scim_type) in cases {
        let response = app.patch(&path, &body).await;
        assert_scim_error(response, status, Some(scim_type)).await;
    }
    let after = json_of(app.get(&path).await, 200).await;
    assert_eq!(after, created);
}

#[tokio::test]
async fn unknown_ids_and_routes() {
    let app = TestApp::spawn().await;
    assert_scim_error(app.get("/Users/does-not-exist").await, 404, None).await;
    assert_scim_error(
        app.put("/Users/does-not-exist", &user("x")).await,
        404,
        None,
    )
    .await;
    assert_scim_error(app.get("/Widgets").await, 404, None).await;
    assert_scim_error(app.get("/Me").await, 501, None).await;
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"] {
            let response = app
                .request(method.clone(), path)
                .header("Content-Type", "application/scim+json")
                .body("{}")
                .send()
                .await
                .unwrap();
            assert_scim_error(response, 405, None).await;
        }
    }
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let app = TestApp::spawn_with(|settings| settings.server.max_body_bytes = 4096).await;
    let mut body = user("big");
    body["displayName"] = json!("x".repeat(10_000));
    assert_scim_error(app.post("/Users", &body).await, 413, None).await;
}

#[tokio::test]
async fn authentication_is_required_everywhere() {
    let app = TestApp::spawn().await;
    for path in [
        "/Users",
        "/Groups",
        "/ServiceProviderConfig",
        "/Schemas",
        "/ResourceTypes",
    ] {
        let none = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            none.headers()["www-authenticate"],
            "Bearer realm=\"scim-bridge\""
        );
        assert_scim_error(none, 401, None).await;
        let wrong = app
            .client
            .get(app.url(path))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap();
        assert_scim_error(wrong, 401, None).await;
        let basic = app
            .client
            .get(app.url(path))
            .basic_auth("user", Some(TOKEN))
            .send()
            .await
            .unwrap();
        assert_scim_error(basic, 401, None).await;
    }
}

#[tokio::test]
async fn per_client_rate_limit_answers_429_with_retry_after() {
    let app = TestApp::spawn_with(|settings| settings.scim.requests_per_second = 2).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..6 {
        let response = app.get("/Users?count=0").await;
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").cloned();
        }
        statuses.push(response.status().as_u16());
    }
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    assert!(retry_after.is_some_and(|v| v.to_str().unwrap().parse::<u64>().unwrap() >= 1));
}

#[tokio::test]
async fn health_endpoints_need_no_token() {
    let app = TestApp::spawn().await;
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}
