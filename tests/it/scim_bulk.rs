//! Bulk with bulkId references, failOnErrors and advertised limits.

use serde_json::json;

use crate::support::{assert_scim_error, json_of, user, TestApp};

const BULK: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

#[tokio::test]
async fn bulk_resolves_references_in_any_order() {
    let app = TestApp::spawn().await;
    // The group comes first and references a user created later in the same request.
    let body = json!({
        "schemas": [BULK],
        "Operations": [
            {"method": "POST", "path": "/Groups", "bulkId": "g1",
             "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Bulk Group",
                      "members": [{"type": "User", "value": "bulkId:u1"}]}},
            {"method": "POST", "path": "/Users", "bulkId": "u1", "data": user("bulk-user")},
            {"method": "PATCH", "path": "/Users/bulkId:u1",
             "data": {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "replace", "path": "displayName", "value": "Bulk User"}]}}
        ]
    });
    let response = json_of(app.post("/Bulk", &body).await, 200).await;
    assert_eq!(
        response["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
    );
    let ops = response["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 3);
    assert!(
        ops.iter()
            .all(|op| op["status"] == "201" || op["status"] == "200"),
        "{response}"
    );
    let user_location = ops[1]["location"].as_str().unwrap();
    let user_id = user_location.rsplit('/').next().unwrap();
    let group = json_of(
        app.get(&format!(
            "/Groups/{}",
            ops[0]["location"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
        ))
        .await,
        200,
    )
    .await;
    assert_eq!(group["members"][0]["value"], user_id);
    let user = json_of(app.get(&format!("/Users/{user_id}")).await, 200).await;
    assert_eq!(user["displayName"], "Bulk User");
}

#[tokio::test]
async fn bulk_reports_errors_and_stops_at_fail_on_errors() {
    let app = TestApp::spawn().await;
    app.create_user(&user("taken")).await;
    let body = json!({
        "schemas": [BULK],
        "failOnErrors": 1,
        "Operations": [
            {"method": "POST", "path": "/Users", "bulkId": "a", "data": user("taken")},
            {"method": "POST", "path": "/Users", "bulkId": "b", "data": user("never-run")}
        ]
    });
    let response = json_of(app.post("/Bulk", &body).await, 200).await;
    let ops = response["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 1, "{response}");
    assert_eq!(ops[0]["status"], "409");
    assert_eq!(ops[0]["response"]["scimType"], "uniqueness");
    let list = json_of(
        app.get("/Users?filter=userName%20eq%20%22never-run%22")
            .await,
        200,
    )
    .await;
    assert_eq!(list["totalResults"], 0);
}

#[tokio::test]
async fn bulk_circular_and_unknown_references_fail_cleanly() {
    let app = TestApp::spawn().await;
    let group = |id: &str, other: &str| {
        json!({"method": "POST", "path": "/Groups", "bulkId": id,
               "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": id,
                        "members": [{"value": format!("bulkId:{other}")}]}})
    };
    let body = json!({"schemas": [BULK], "Operations": [group("x", "y"), group("y", "x"), group("z", "missing")]});
    let response = json_of(app.post("/Bulk", &body).await, 200).await;
    let ops = response["Operations"].as_array().unwrap();
    assert_eq!(ops.len(), 3);
    assert!(ops.iter().all(|op| op["status"] == "400"), "{response}");
}

#[tokio::test]
async fn bulk_limits_are_enforced() {
    let app = TestApp::spawn_with(|settings| settings.scim.bulk_max_operations = 2).await;
    let op = json!({"method": "DELETE", "path": "/Users/x"});
    let body = json!({"schemas": [BULK], "Operations": [op, op, op]});
    assert_scim_error(app.post("/Bulk", &body).await, 413, None).await;
    let no_schema = json!({"Operations": []});
    assert_scim_error(
        app.post("/Bulk", &no_schema).await,
        400,
        Some("invalidSyntax"),
    )
    .await;
}
