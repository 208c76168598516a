//! Users: create, read, replace, patch, delete, list, filter, sort, paginate, project, ETags.

use serde_json::json;

use crate::support::{assert_scim_error, json_of, user, TestApp};

#[tokio::test]
async fn create_returns_201_with_location_etag_and_no_password() {
    let app = TestApp::spawn().await;
    let mut body = user("ana");
    body["password"] = json!("s3cret-Passw0rd");
    let response = app.post("/Users", &body).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["content-type"], "application/scim+json");
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = json_of(response, 201).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, app.url(&format!("/Users/{id}")));
    assert_eq!(created["meta"]["location"], location);
    assert_eq!(created["meta"]["version"], etag);
    assert_eq!(created["meta"]["resourceType"], "User");
    assert_eq!(created["userName"], "ana");
    assert!(created.get("password").is_none(), "{created}");
    assert!(!created.to_string().contains("s3cret"));

    let fetched = json_of(app.get(&format!("/Users/{id}")).await, 200).await;
    assert_eq!(fetched, created);
}

#[tokio::test]
async fn password_is_never_stored_in_plain_text() {
    let app = TestApp::spawn().await;
    let mut body = user("pw");
    body["password"] = json!("Plaintext-Marker-123");
    app.create_user(&body).await;
    for file in std::fs::read_dir(app.dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("Plaintext-Marker-123"));
    }
}

#[tokio::test]
async fn user_name_is_unique_ignoring_case() {
    let app = TestApp::spawn().await;
    app.create_user(&user("Bob")).await;
    let response = app.post("/Users", &user("bob")).await;
    assert_scim_error(response, 409, Some("uniqueness")).await;
    // A retried create is answered 409, and there is still one user.
    let list = json_of(
        app.get("/Users?filter=userName%20eq%20%22BOB%22").await,
        200,
    )
    .await;
    assert_eq!(list["totalResults"], 1);
}

#[tokio::test]
async fn put_replaces_and_bumps_the_version_only_on_change() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("carol")).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/Users/{id}");

    let mut replacement = user("carol");
    replacement["displayName"] = json!("Carol C");
    replacement.as_object_mut().unwrap().remove("emails");
    let replaced = json_of(app.put(&path, &replacement).await, 200).await;
    assert_eq!(replaced["displayName"], "Carol C");
    assert!(replaced.get("emails").is_none(), "PUT replaces: {replaced}");
    assert_ne!(replaced["meta"]["version"], created["meta"]["version"]);
    assert_eq!(replaced["meta"]["created"], created["meta"]["created"]);

    let again = json_of(app.put(&path, &replacement).await, 200).await;
    assert_eq!(again["meta"]["version"], replaced["meta"]["version"]);
}

#[tokio::test]
async fn put_cannot_take_another_users_name() {
    let app = TestApp::spawn().await;
    app.create_user(&user("dave")).await;
    let erin = app.create_user(&user("erin")).await;
    let response = app
        .put(
            &format!("/Users/{}", erin["id"].as_str().unwrap()),
            &user("DAVE"),
        )
        .await;
    assert_scim_error(response, 409, Some("uniqueness")).await;
}

#[tokio::test]
async fn delete_then_get_is_404() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("frank")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    assert_eq!(app.delete(&path).await.status(), 204);
    assert_scim_error(app.get(&path).await, 404, None).await;
    assert_scim_error(app.delete(&path).await, 404, None).await;
}

#[tokio::test]
async fn etag_preconditions() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("gina")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    let version = created["meta"]["version"].as_str().unwrap().to_owned();

    let not_modified = app
        .request(reqwest::Method::GET, &path)
        .header("If-None-Match", &version)
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);

    let stale = app
        .request(reqwest::Method::PUT, &path)
        .header("If-Match", "W/\"999\"")
        .header("Content-Type", "application/scim+json")
        .body(user("gina").to_string())
        .send()
        .await
        .unwrap();
    assert_scim_error(stale, 412, None).await;

    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "displayName", "value": "G"}]
    });
    let fresh = app
        .request(reqwest::Method::PATCH, &path)
        .header("If-Match", &version)
        .header("Content-Type", "application/scim+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    let patched = json_of(fresh, 200).await;
    assert_ne!(patched["meta"]["version"], version);

    let stale_delete = app
        .request(reqwest::Method::DELETE, &path)
        .header("If-Match", &version)
        .send()
        .await
        .unwrap();
    assert_scim_error(stale_delete, 412, None).await;
    assert_eq!(
        app.get(&path).await.status(),
        200,
        "a failed delete changes nothing"
    );
}

async fn seed(app: &TestApp) {
    for (name, given, department, active) in [
        ("alice", "Alice", "Sales", true),
        ("bruno", "Bruno", "Engineering", true),
        ("chen", "Chen", "Engineering", false),
        ("dora", "Dora", "Sales", true),
        ("emil", "Emil", "Support", true),
    ] {
        let mut body = user(name);
        body["schemas"].as_array_mut().unwrap().push(json!(
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ));
        body["name"]["givenName"] = json!(given);
        body["active"] = json!(active);
        body["externalId"] = json!(format!("ext-{name}"));
        body["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
            json!({"department": department});
        app.create_user(&body).await;
    }
}

async fn names(app: &TestApp, query: &str) -> Vec<String> {
    let list = json_of(app.get(&format!("/Users?{query}")).await, 200).await;
    list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["userName"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn filters_cover_every_operator() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let cases = [
        ("filter=userName eq \"ALICE\"", vec!["alice"]),
        ("filter=userName ne \"alice\" and active eq true", vec!["bruno", "dora", "emil"]),
        ("filter=userName co \"r\"", vec!["bruno", "dora"]),
        ("filter=userName sw \"d\"", vec!["dora"]),
        ("filter=userName ew \"o\"", vec!["bruno"]),
        ("filter=externalId pr", vec!["alice", "bruno", "chen", "dora", "emil"]),
        ("filter=userName gt \"chen\"", vec!["dora", "emil"]),
        ("filter=userName ge \"chen\"", vec!["chen", "dora", "emil"]),
        ("filter=userName lt \"bruno\"", vec!["alice"]),
        ("filter=userName le \"bruno\"", vec!["alice", "bruno"]),
        ("filter=not (active eq true)", vec!["chen"]),
        ("filter=(userName eq \"alice\" or userName eq \"emil\") and active eq true", vec!["alice", "emil"]),
        ("filter=emails[type eq \"work\" and value co \"dora\"]", vec!["dora"]),
        ("filter=emails.value eq \"emil@example.com\"", vec!["emil"]),
        ("filter=externalId eq \"ext-chen\"", vec!["chen"]),
        ("filter=urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"Engineering\"", vec!["bruno", "chen"]),
        ("filter=name.givenName sw \"A\"", vec!["alice"]),
        ("filter=USERNAME EQ \"bruno\"", vec!["bruno"]),
        ("filter=userName+eq+\"dora\"", vec!["dora"]),
        ("filter=meta.created gt \"2000-01-01T00:00:00Z\" and userName eq \"alice\"", vec!["alice"]),
    ];
    for (query, expected) in cases {
        let query = query.replace(' ', "%20").replace('"', "%22");
        let mut got = names(&app, &query).await;
        got.sort();
        assert_eq!(got, expected, "{query}");
    }
}

#[tokio::test]
async fn a_probe_for_a_missing_user_is_an_empty_list() {
    let app = TestApp::spawn().await;
    let list = json_of(
        app.get("/Users?filter=userName%20eq%20%22nobody%22&startIndex=1&count=100")
            .await,
        200,
    )
    .await;
    assert_eq!(list["totalResults"], 0);
    assert_eq!(list["Resources"], json!([]));
    assert_eq!(
        list["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:ListResponse"
    );
}

#[tokio::test]
async fn bad_filters_are_invalid_filter_errors() {
    let app = TestApp::spawn().await;
    for filter in [
        "userName eq",
        "userName xx \"a\"",
        "(userName eq \"a\"",
        "emails[type eq \"work\"",
    ] {
        let query = format!(
            "/Users?filter={}",
            filter.replace(' ', "%20").replace('"', "%22")
        );
        assert_scim_error(app.get(&query).await, 400, Some("invalidFilter")).await;
    }
}

#[tokio::test]
async fn sort_and_paginate() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    assert_eq!(
        names(&app, "sortBy=userName&sortOrder=descending").await,
        ["emil", "dora", "chen", "bruno", "alice"]
    );
    assert_eq!(
        names(&app, "sortBy=name.givenName&startIndex=2&count=2").await,
        ["bruno", "chen"]
    );
    let page = json_of(app.get("/Users?startIndex=4&count=10").await, 200).await;
    assert_eq!(page["totalResults"], 5);
    assert_eq!(page["startIndex"], 4);
    assert_eq!(page["itemsPerPage"], 2);
    let only_total = json_of(app.get("/Users?count=0").await, 200).await;
    assert_eq!(only_total["totalResults"], 5);
    assert_eq!(only_total["Resources"], json!([]));
    let beyond = json_of(app.get("/Users?startIndex=50").await, 200).await;
    assert_eq!(beyond["totalResults"], 5);
    assert_eq!(beyond["itemsPerPage"], 0);
}

#[tokio::test]
async fn attribute_projection() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let list = json_of(
        app.get("/Users?filter=userName%20eq%20%22alice%22&attributes=name.givenName,emails.value")
            .await,
        200,
    )
    .await;
    let alice = &list["Resources"][0];
    assert!(alice["id"].is_string(), "id is always returned: {alice}");
    assert_eq!(alice["name"], json!({"givenName": "Alice"}));
    assert_eq!(alice["emails"], json!([{"value": "alice@example.com"}]));
    assert!(alice.get("active").is_none(), "{alice}");
    assert!(alice.get("userName").is_none(), "{alice}");

    let id = alice["id"].as_str().unwrap();
    let without = json_of(
        app.get(&format!("/Users/{id}?excludedAttributes=emails,name"))
            .await,
        200,
    )
    .await;
    assert!(without.get("emails").is_none() && without.get("name").is_none());
    assert_eq!(without["userName"], "alice");
}

#[tokio::test]
async fn search_by_post() {
    let app = TestApp::spawn().await;
    seed(&app).await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "active eq true",
        "sortBy": "userName",
        "startIndex": 1,
        "count": 2,
        "attributes": ["userName"]
    });
    let list = json_of(app.post("/Users/.search", &body).await, 200).await;
    assert_eq!(list["totalResults"], 4);
    assert_eq!(list["Resources"].as_array().unwrap().len(), 2);
    assert_eq!(list["Resources"][0]["userName"], "alice");
    assert!(list["Resources"][0].get("emails").is_none());

    let wrong = json!({"filter": "active eq true"});
    assert_scim_error(
        app.post("/Users/.search", &wrong).await,
        400,
        Some("invalidSyntax"),
    )
    .await;
}

#[tokio::test]
async fn patch_paths_and_filters() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("hugo")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555 0100", "type": "mobile"}]},
            {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "hugo@corp.example"},
            {"op": "replace", "path": "name.givenName", "value": "Hugo"},
            {"op": "add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Ops"},
            {"op": "remove", "path": "name.familyName"}
        ]
    });
    let patched = json_of(app.patch(&path, &body).await, 200).await;
    assert_eq!(patched["phoneNumbers"][0]["value"], "+1 555 0100");
    assert_eq!(patched["emails"][0]["value"], "hugo@corp.example");
    assert_eq!(patched["name"]["givenName"], "Hugo");
    assert!(patched["name"].get("familyName").is_none());
    assert_eq!(
        patched["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Ops"
    );
    // The indexed email lookup sees the change.
    let found = json_of(
        app.get("/Users?filter=emails.value%20eq%20%22hugo@corp.example%22")
            .await,
        200,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
}

#[tokio::test]
async fn failed_patch_changes_nothing() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("ivan")).await;
    let path = format!("/Users/{}", created["id"].as_str().unwrap());
    let body = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "replace", "path": "displayName", "value": "Changed"},
            {"op": "replace", "path": "id", "value": "mine-now"}
        ]
    });
    assert_scim_error(app.patch(&path, &body).await, 400, Some("mutability")).await;
    let after = json_of(app.get(&path).await, 200).await;
    assert_eq!(after, created);
}
