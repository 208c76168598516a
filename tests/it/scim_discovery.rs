//! Discovery tells the truth about what the API does.

use scim_bridge::scim::discovery::SERVICE_PROVIDER_CONFIG_SCHEMA;

use crate::support::{json_of, TestApp};

#[tokio::test]
async fn service_provider_config_advertises_what_is_supported() {
    let app = TestApp::spawn_with(|settings| {
        settings.scim.bulk_max_operations = 77;
        settings.scim.max_page_size = 333;
    })
    .await;
    let config = json_of(app.get("/ServiceProviderConfig").await, 200).await;
    assert_eq!(config["patch"]["supported"], true);
    // The core attributes are exactly RFC 7643's: strict clients refuse unknown ones, so the
    // PATCH and filter limits are told by the errors that enforce them.
    assert_eq!(
        config["schemas"],
        serde_json::json!([SERVICE_PROVIDER_CONFIG_SCHEMA])
    );
    assert_eq!(config["patch"], serde_json::json!({"supported": true}));
    assert_eq!(config["bulk"]["supported"], true);
    assert_eq!(config["bulk"]["maxOperations"], 77);
    assert_eq!(config["filter"]["maxResults"], 333);
    assert_eq!(config["sort"]["supported"], true);
    assert_eq!(config["etag"]["supported"], true);
    assert_eq!(
        config["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );
}

#[tokio::test]
async fn resource_types_and_schemas() {
    let app = TestApp::spawn().await;
    let types = json_of(app.get("/ResourceTypes").await, 200).await;
    assert_eq!(types["totalResults"], 2);
    let user_type = json_of(app.get("/ResourceTypes/User").await, 200).await;
    assert_eq!(user_type["endpoint"], "/Users");
    assert_eq!(
        user_type["schemaExtensions"][0]["schema"],
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
    );

    let schemas = json_of(app.get("/Schemas").await, 200).await;
    assert_eq!(schemas["totalResults"], 3);
    let user = json_of(
        app.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")
            .await,
        200,
    )
    .await;
    let attributes = user["attributes"].as_array().unwrap();
    let user_name = attributes.iter().find(|a| a["name"] == "userName").unwrap();
    assert_eq!(user_name["uniqueness"], "server");
    assert_eq!(user_name["caseExact"], false);
    assert_eq!(user_name["required"], true);
    let password = attributes.iter().find(|a| a["name"] == "password").unwrap();
    assert_eq!(password["returned"], "never");
    assert_eq!(password["mutability"], "writeOnly");
    let groups = attributes.iter().find(|a| a["name"] == "groups").unwrap();
    assert_eq!(groups["mutability"], "readOnly");
    for attribute in attributes {
        for key in ["type", "multiValued", "required", "mutability", "returned"] {
            assert!(attribute.get(key).is_some(), "{key} missing on {attribute}");
        }
    }
    assert_eq!(app.get("/Schemas/urn:nope").await.status(), 404);
}
