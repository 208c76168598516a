//! Groups: members, derived user.groups, deletes that clean memberships.

use serde_json::json;

use crate::support::{assert_scim_error, group, json_of, user, TestApp};

#[tokio::test]
async fn group_lifecycle_and_derived_user_groups() {
    let app = TestApp::spawn().await;
    let u = app.create_user(&user("member")).await;
    let uid = u["id"].as_str().unwrap();
    let g = app.create_group(&group("Schedulers", &[uid])).await;
    let gid = g["id"].as_str().unwrap();
    assert_eq!(g["members"][0]["value"], uid);
    assert_eq!(g["members"][0]["type"], "User");
    assert_eq!(g["meta"]["resourceType"], "Group");

    let member = json_of(app.get(&format!("/Users/{uid}")).await, 200).await;
    assert_eq!(
        member["groups"],
        json!([{"value": gid, "display": "Schedulers", "type": "direct",
                "$ref": app.url(&format!("/Groups/{gid}"))}])
    );
    assert_eq!(g["members"][0]["$ref"], app.url(&format!("/Users/{uid}")));

    // groups is read-only on the user.
    let mut body = user("member");
    body["groups"] = json!([{"value": "nope"}]);
    let replaced = json_of(app.put(&format!("/Users/{uid}"), &body).await, 200).await;
    assert_eq!(
        replaced["groups"][0]["value"], gid,
        "read-only input is ignored"
    );

    // Filter on members.
    let found = json_of(
        app.get(&format!("/Groups?filter=members.value%20eq%20%22{uid}%22"))
            .await,
        200,
    )
    .await;
    assert_eq!(found["totalResults"], 1);

    // Deleting the user removes the membership.
    assert_eq!(app.delete(&format!("/Users/{uid}")).await.status(), 204);
    let after = json_of(app.get(&format!("/Groups/{gid}")).await, 200).await;
    assert!(after.get("members").is_none(), "{after}");

    assert_eq!(app.delete(&format!("/Groups/{gid}")).await.status(), 204);
    assert_scim_error(app.get(&format!("/Groups/{gid}")).await, 404, None).await;
}

#[tokio::test]
async fn members_must_exist() {
    let app = TestApp::spawn().await;
    let response = app.post("/Groups", &group("Ghosts", &["no-such-id"])).await;
    assert_scim_error(response, 400, Some("invalidValue")).await;
}

#[tokio::test]
async fn nested_groups_are_typed() {
    let app = TestApp::spawn().await;
    let inner = app.create_group(&group("Inner", &[])).await;
    let inner_id = inner["id"].as_str().unwrap();
    let outer = app.create_group(&group("Outer", &[inner_id])).await;
    assert_eq!(outer["members"][0]["type"], "Group");
}

#[tokio::test]
async fn display_name_is_required() {
    let app = TestApp::spawn().await;
    let body = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]});
    assert_scim_error(app.post("/Groups", &body).await, 400, Some("invalidValue")).await;
}
