//! The request forms Microsoft Entra ID and Okta really send.

use serde_json::json;

use crate::support::{group, json_of, user, TestApp};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn entra_user() -> serde_json::Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
        "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
        "active": true,
        "displayName": "Test User",
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"department": "Finance", "employeeNumber": "42", "manager": {"value": "boss-id"}}
    })
}

#[tokio::test]
async fn entra_probe_create_and_patch_dialect() {
    let app = TestApp::spawn().await;
    // Probe with '+' for spaces, expecting an empty list rather than 404.
    let probe = json_of(
        app.get("/Users?filter=userName+eq+%22Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1%22")
            .await,
        200,
    )
    .await;
    assert_eq!(probe["totalResults"], 0);

    let created = app.create_user(&entra_user()).await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(created[ENTERPRISE]["manager"]["value"], "boss-id");
    assert!(
        created.get("roles").is_none(),
        "empty arrays are unassigned"
    );

    let by_external = json_of(
        app.get("/Users?filter=externalId+eq+%220a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef%22")
            .await,
        200,
    )
    .await;
    assert_eq!(by_external["Resources"][0]["id"], id);

    let patch = json!({
        "schemas": [PATCH_OP],
        "Operations": [
            {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updated@testuser.com"},
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+44 20 7946 0958"},
            {"op": "Add", "path": "addresses[type eq \"work\"].streetAddress", "value": "1 Main St"},
            {"op": "Replace", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
            {"op": "Replace", "value": {"name.givenName": "Ana", "active": "False", "displayName": "Ana F"}}
        ]
    });
    let patched = json_of(app.patch(&format!("/Users/{id}"), &patch).await, 200).await;
    assert_eq!(patched["emails"][0]["value"], "updated@testuser.com");
    assert_eq!(
        patched["phoneNumbers"][0],
        json!({"type": "mobile", "value": "+44 20 7946 0958"})
    );
    assert_eq!(patched["addresses"][0]["type"], "work");
    assert_eq!(patched["addresses"][0]["streetAddress"], "1 Main St");
    assert_eq!(patched[ENTERPRISE]["department"], "Sales");
    assert_eq!(patched["name"]["givenName"], "Ana");
    assert_eq!(
        patched["active"],
        json!(false),
        "string booleans are coerced"
    );

    // Soft delete, then hard delete.
    let soft = json!({"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "True"}]});
    let active = json_of(app.patch(&format!("/Users/{id}"), &soft).await, 200).await;
    assert_eq!(active["active"], json!(true));
    assert_eq!(app.delete(&format!("/Users/{id}")).await.status(), 204);
}

#[tokio::test]
async fn entra_group_membership_dialect() {
    let app = TestApp::spawn().await;
    let a = app.create_user(&user("entra-a")).await;
    let b = app.create_user(&user("entra-b")).await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let created = app.create_group(&group("Finance Team", &[])).await;
    let gid = created["id"].as_str().unwrap();

    let probe = json_of(
        app.get("/Groups?excludedAttributes=members&filter=displayName+eq+%22Finance+Team%22")
            .await,
        200,
    )
    .await;
    assert_eq!(probe["Resources"][0]["id"], gid);

    let add = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "Add", "path": "members", "value": [{"value": a}, {"value": b}]}
    ]});
    let added = json_of(app.patch(&format!("/Groups/{gid}"), &add).await, 200).await;
    assert_eq!(added["members"].as_array().unwrap().len(), 2);

    let remove = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "Remove", "path": "members", "value": [{"value": a}]}
    ]});
    let removed = json_of(app.patch(&format!("/Groups/{gid}"), &remove).await, 200).await;
    let members: Vec<&str> = removed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [b]);

    let user_b = json_of(app.get(&format!("/Users/{b}")).await, 200).await;
    assert_eq!(user_b["groups"][0]["value"], gid);
    assert_eq!(user_b["groups"][0]["display"], "Finance Team");
}

#[tokio::test]
async fn okta_probe_deactivate_put_and_group_dialect() {
    let app = TestApp::spawn().await;
    let created = app.create_user(&user("okta.user@example.com")).await;
    let id = created["id"].as_str().unwrap();

    let probe = json_of(
        app.get("/Users?filter=userName%20eq%20%22OKTA.USER@EXAMPLE.COM%22&startIndex=1&count=100")
            .await,
        200,
    )
    .await;
    assert_eq!(probe["totalResults"], 1, "userName eq ignores case");

    let duplicate = app.post("/Users", &user("okta.user@example.com")).await;
    assert_eq!(duplicate.status(), 409);

    let deactivate = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": false}}]});
    let patched = json_of(app.patch(&format!("/Users/{id}"), &deactivate).await, 200).await;
    assert_eq!(patched["active"], json!(false));

    let mut full = user("okta.user@example.com");
    full["id"] = json!(id);
    full["name"]["familyName"] = json!("Renamed");
    let replaced = json_of(app.put(&format!("/Users/{id}"), &full).await, 200).await;
    assert_eq!(replaced["name"]["familyName"], "Renamed");
    assert_eq!(replaced["active"], json!(true));

    let other = app.create_user(&user("okta.other@example.com")).await;
    let other = other["id"].as_str().unwrap();
    let g = app.create_group(&group("Okta Group", &[id])).await;
    let gid = g["id"].as_str().unwrap();
    let ops = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": other, "display": "okta.other@example.com"}]},
        {"op": "remove", "path": format!("members[value eq \"{id}\"]")},
        {"op": "replace", "value": {"id": gid, "displayName": "Okta Group Renamed"}}
    ]});
    let patched = json_of(app.patch(&format!("/Groups/{gid}"), &ops).await, 200).await;
    assert_eq!(patched["displayName"], "Okta Group Renamed");
    let members: Vec<&str> = patched["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, [other]);

    let replace_all = json!({"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "members", "value": [{"value": id}]}
    ]});
    let patched = json_of(
        app.patch(&format!("/Groups/{gid}"), &replace_all).await,
        200,
    )
    .await;
    assert_eq!(patched["members"][0]["value"], id);
    assert_eq!(patched["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn plain_json_content_type_is_accepted() {
    let app = TestApp::spawn().await;
    let response = app
        .request(reqwest::Method::POST, "/Users")
        .header("Content-Type", "application/json; charset=utf-8")
        .body(user("plain").to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}
