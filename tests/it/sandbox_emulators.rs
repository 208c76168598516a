//! Emulator tests: each API's validation rules and every fault mode, over raw HTTP, with the
//! emulator's own state checked where it matters.

use std::time::{Duration, Instant, SystemTime};

use reqwest::{Client, RequestBuilder, Response, StatusCode};
use scim_bridge::sandbox::{
    appgate, SandboxConfig, DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_KIBO_SITE, DEV_KIBO_TENANT,
    DEV_PASSWORD, DEV_PRIMAVERA_TENANT, DEV_USERNAME,
};
use scim_bridge::targets;
use scim_bridge::targets::TargetError;
use serde_json::{json, Value};

use crate::support::{object, Env};

async fn body(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, value)
}

async fn send(request: RequestBuilder) -> (StatusCode, Value) {
    body(request.send().await.unwrap()).await
}

fn accept(version: u32) -> String {
    format!("application/vnd.appgate.peer-v{version}+json")
}

/// Logs in to the Appgate emulator and returns a request maker carrying the token.
async fn appgate_session(env: &Env) -> impl Fn(reqwest::Method, &str) -> RequestBuilder {
    let base = env.emulator(&targets::appgate::VENDOR).base_url();
    let client = Client::new();
    let (status, login) = send(
        client
            .post(format!("{base}/login"))
            .header("accept", accept(20))
            .json(&json!({
                "providerName": "local", "deviceId": "4c07bc67-57ea-42dd-b702-c2d6c45419fc",
                "username": DEV_USERNAME, "password": DEV_PASSWORD
            })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    move |method, path| {
        client
            .request(method, format!("{base}{path}"))
            .header("accept", accept(20))
            .bearer_auth(&token)
    }
}

#[tokio::test]
async fn appgate_answers_406_outside_its_version_window() {
    let env = Env::start().await;
    let login = format!(
        "{}/login",
        env.emulator(&targets::appgate::VENDOR).base_url()
    );
    let client = Client::new();
    for accept_header in [
        Some(accept(appgate::MIN_VERSION - 1)),
        Some(accept(appgate::MAX_VERSION + 1)),
        None,
    ] {
        let mut request = client.post(&login).json(&json!({}));
        if let Some(value) = &accept_header {
            request = request.header("accept", value);
        }
        let (status, error) = send(request).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{accept_header:?}");
        assert_eq!(error["minSupportedVersion"], json!(appgate::MIN_VERSION));
        assert_eq!(error["maxSupportedVersion"], json!(appgate::MAX_VERSION));
        assert_eq!(error["message"], json!("Invalid 'Accept' header."));
    }
    let (status, login) = send(
        client
            .post(&login)
            .header("accept", accept(appgate::MIN_VERSION))
            .json(&json!({
                "providerName": "local", "deviceId": "4c07bc67-57ea-42dd-b702-c2d6c45419fc",
                "username": DEV_USERNAME, "password": "wrong"
            })),
    )
    .await;
    assert_eq!(
        (status, login["message"].clone()),
        (
            StatusCode::UNAUTHORIZED,
            json!("Invalid username or password.")
        )
    );
}

#[tokio::test]
async fn appgate_tokens_expire_with_the_clock() {
    let env = Env::start().await;
    let call = appgate_session(&env).await;
    let (status, _) = send(call(reqwest::Method::GET, "/local-users")).await;
    assert_eq!(status, StatusCode::OK);
    env.clock.advance(Duration::from_secs(3_601));
    let (status, error) = send(call(reqwest::Method::GET, "/local-users")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        error,
        json!({"id": "unauthorized", "message": "Token error. Login again."})
    );
}

#[tokio::test]
async fn appgate_validates_creates_with_200_and_replaces_on_put() {
    use reqwest::Method;
    let env = Env::start().await;
    let emulator = env.emulator(&targets::appgate::VENDOR);
    let call = appgate_session(&env).await;
    let ana = json!({"name": "ana", "firstName": "Ana", "lastName": "Lima",
                     "password": "first", "email": "ana@example.com", "tags": ["x"]});

    let mut empty = ana.clone();
    empty["lastName"] = json!("");
    let (status, error) = send(call(Method::POST, "/local-users").json(&empty)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        error["errors"],
        json!([{"field": "lastName", "message": "may not be empty"}])
    );

    // The reference marks name, firstName and lastName "Required", not the password (001).
    let mut no_password = ana.clone();
    no_password.as_object_mut().unwrap().remove("password");
    no_password["name"] = json!("sso-user");
    let (status, created) = send(call(Method::POST, "/local-users").json(&no_password)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let sso_id = created["id"].as_str().unwrap();
    assert_eq!(emulator.secret(sso_id, "password"), None);
    send(call(Method::DELETE, &format!("/local-users/{sso_id}"))).await;

    let (status, created) = send(call(Method::POST, "/local-users").json(&ana)).await;
    assert_eq!(status, StatusCode::OK, "Appgate answers a create with 200");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(created.get("password").is_none(), "write-only: {created}");
    assert_eq!(emulator.secret(&id, "password").as_deref(), Some("first"));

    let (status, error) = send(call(Method::POST, "/local-users").json(&ana)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    // A PUT without password keeps it; anything else left out is cleared.
    let replacement = json!({"name": "ana", "firstName": "Ana", "lastName": "Souza"});
    let (status, replaced) =
        send(call(Method::PUT, &format!("/local-users/{id}")).json(&replacement)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(replaced["lastName"], json!("Souza"));
    assert!(
        replaced.get("email").is_none(),
        "PUT replaces the whole user: {replaced}"
    );
    assert_eq!(emulator.secret(&id, "password").as_deref(), Some("first"));
    let writes = |id: &str| emulator.account(id).unwrap().secret_writes;
    assert_eq!(writes(&id), [("password".to_owned(), 1)].into());
    let mut with_password = replacement.clone();
    with_password["password"] = json!("second");
    send(call(Method::PUT, &format!("/local-users/{id}")).json(&with_password)).await;
    assert_eq!(emulator.secret(&id, "password").as_deref(), Some("second"));
    assert_eq!(
        writes(&id),
        [("password".to_owned(), 2)].into(),
        "every write that sets it counts"
    );

    // `query` is a substring match across fields.
    for name in ["joanna", "bob"] {
        let user = json!({"name": name, "firstName": "X", "lastName": "Y", "password": "p"});
        assert_eq!(
            send(call(Method::POST, "/local-users").json(&user)).await.0,
            StatusCode::OK
        );
    }
    let (_, page) = send(call(
        Method::GET,
        "/local-users?query=an&range=0-10&orderBy=name",
    ))
    .await;
    let names: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("ana"), json!("joanna")]);
    assert_eq!(page["totalCount"], json!(2));
    let (_, page) = send(call(Method::GET, "/local-users?query=&range=1-2")).await;
    assert_eq!(page["data"][0]["name"], json!("bob"));

    let (status, _) = send(call(Method::DELETE, &format!("/local-users/{id}"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, error) = send(call(Method::GET, &format!("/local-users/{id}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error["id"], json!("not found"));
    let counts = emulator
        .accounts()
        .into_iter()
        .find(|account| account.id == id)
        .unwrap()
        .counts;
    assert_eq!((counts.creates, counts.updates, counts.deletes), (1, 2, 1));
}

/// Appgate validates a body strictly: a field that is not part of a Local User is named in
/// the 422's `errors`, and nothing is stored. Fields the controller assigns may be sent back
/// as read (a PUT of what a GET returned), and are ignored.
#[tokio::test]
async fn appgate_refuses_a_field_a_local_user_does_not_have() {
    use reqwest::Method;
    let env = Env::start().await;
    let emulator = env.emulator(&targets::appgate::VENDOR);
    let call = appgate_session(&env).await;
    let ana = json!({"name": "ana", "firstName": "Ana", "lastName": "Lima", "department": "x"});

    let (status, error) = send(call(Method::POST, "/local-users").json(&ana)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
    assert_eq!(
        error["errors"],
        json!([{"field": "department", "message": "is not a field of a Local User"}])
    );
    assert!(emulator.accounts().is_empty());

    let mut known = ana.clone();
    known.as_object_mut().unwrap().remove("department");
    let (status, created) = send(call(Method::POST, "/local-users").json(&known)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, replaced) =
        send(call(Method::PUT, &format!("/local-users/{id}")).json(&created)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["created"], created["created"]);
}

#[tokio::test]
async fn vikingcloud_checks_tokens_phone_rule_and_uniqueness() {
    let env = Env::start().await;
    let base = env.emulator(&targets::vikingcloud::VENDOR).base_url();
    let client = Client::new();
    let (status, login) = send(
        client
            .post(format!("{base}/user-service/v1/login"))
            .json(&json!({
                "username": DEV_USERNAME, "password": DEV_PASSWORD
            })),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let access = login["access_token"].as_str().unwrap().to_owned();
    let id_token = login["id_token"].as_str().unwrap().to_owned();
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{base}{path}"))
            .header("x-jwt-assertion", &access)
            .bearer_auth(&id_token)
    };
    use reqwest::Method;

    let (status, error) = send(
        client
            .get(format!("{base}/user-service/internal/user/local/ana"))
            .bearer_auth(&id_token),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the access token header is required"
    );
    assert_eq!(
        error["path"],
        json!("/user-service/internal/user/local/ana")
    );
    assert_eq!(error["error"], json!("Unauthorized"));

    let ana = json!({"userKey": {"username": "ana", "authenticator": "local"},
                     "email": "ana@example.com", "password": "p",
                     "primaryPhone": "5550100", "roles": [], "privileges": []});
    let mut no_country = ana.clone();
    no_country
        .as_object_mut()
        .unwrap()
        .remove("primaryPhoneCountryCode");
    let (status, error) =
        send(call(Method::POST, "/user-service/v1/user/create").json(&no_country)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error["message"],
        json!("primaryPhoneCountryCode is mandatory when primaryPhone is sent")
    );
    assert_eq!(error["status"], json!(400));

    let mut ana = ana;
    ana["primaryPhoneCountryCode"] = json!("1");
    let (status, created) =
        send(call(Method::POST, "/user-service/v1/user/create").json(&ana)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created.get("password").is_none());
    assert_eq!(created["enabled"], json!(true));

    let (status, _) = send(call(Method::POST, "/user-service/v1/user/create").json(&ana)).await;
    assert_eq!(status, StatusCode::CONFLICT, "same userKey");
    let mut same_email = ana.clone();
    same_email["userKey"]["username"] = json!("ana2");
    let (status, error) =
        send(call(Method::POST, "/user-service/v1/user/create").json(&same_email)).await;
    assert_eq!(
        (status, error["message"].clone()),
        (StatusCode::CONFLICT, json!("Email already in use"))
    );

    let (status, error) = send(
        call(Method::POST, "/user-service/v1/user/create").json(&json!({"email": "x@example.com"})),
    )
    .await;
    assert_eq!(
        (status, error["message"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Field \"userKey\" cannot be null")
        )
    );
    let mut repeated_roles = same_email.clone();
    repeated_roles["roles"] = json!([{"name": "a"}, {"name": "a"}]);
    let (status, error) =
        send(call(Method::POST, "/user-service/v1/user/create").json(&repeated_roles)).await;
    assert_eq!(
        (status, error["message"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Field \"roles\" must hold unique items")
        )
    );

    // Update is a POST naming the user by its key; fields not sent stay, but the lists are
    // replaced with what is sent, and one left out takes its default, [] (seed 002).
    let listed = json!({"userKey": {"username": "ana", "authenticator": "local"},
                        "roles": [{"name": "ADMIN"}], "privileges": [{"name": "EXPORT"}]});
    let (status, updated) = send(call(Method::POST, "/user-service/v1/user").json(&listed)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["privileges"], json!([{"name": "EXPORT"}]));
    let update =
        json!({"userKey": {"username": "ana", "authenticator": "local"}, "enabled": false});
    let (status, updated) = send(call(Method::POST, "/user-service/v1/user").json(&update)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (updated["enabled"].clone(), updated["email"].clone()),
        (json!(false), json!("ana@example.com"))
    );
    assert_eq!(
        (updated["roles"].clone(), updated["privileges"].clone()),
        (json!([]), json!([])),
        "an update without the lists empties them"
    );
    let unknown = json!({"userKey": {"username": "nobody", "authenticator": "local"}});
    assert_eq!(
        send(call(Method::POST, "/user-service/v1/user").json(&unknown))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    let (status, found) = send(call(Method::GET, "/user-service/internal/user/local/ana")).await;
    assert_eq!(
        (status, found["enabled"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(
        send(call(Method::DELETE, "/user-service/v1/user/local/ana"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(call(Method::GET, "/user-service/internal/user/local/ana"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn kibo_requires_context_headers_and_full_puts() {
    let env = Env::start().await;
    let base = env.emulator(&targets::kibo::VENDOR).base_url();
    let client = Client::new();
    let oauth = format!("{base}/platform/applications/authtickets/oauth");
    let grant = |secret: &str, grant_type: &str| json!({"client_id": DEV_CLIENT_ID, "client_secret": secret, "grant_type": grant_type});
    assert_eq!(
        send(
            client
                .post(&oauth)
                .json(&grant("wrong", "client_credentials"))
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(
            client
                .post(&oauth)
                .json(&grant(DEV_CLIENT_SECRET, "password"))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let (status, ticket) = send(
        client
            .post(&oauth)
            .json(&grant(DEV_CLIENT_SECRET, "client_credentials")),
    )
    .await;
    assert_eq!(
        (status, ticket["expires_in"].clone()),
        (StatusCode::OK, json!(3_600))
    );
    let token = ticket["access_token"].as_str().unwrap().to_owned();
    let accounts = format!("{base}/platform/adminuser/accounts");
    let call = |request: RequestBuilder| {
        request
            .bearer_auth(&token)
            .header("x-vol-tenant", DEV_KIBO_TENANT)
            .header("x-vol-site", DEV_KIBO_SITE)
    };

    let (status, error) = send(
        client
            .get(&accounts)
            .bearer_auth(&token)
            .header("x-vol-site", DEV_KIBO_SITE),
    )
    .await;
    assert_eq!(
        (status, error["errorCode"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("MISSING_OR_INVALID_PARAMETER")
        )
    );
    let (status, _) = send(
        client
            .get(&accounts)
            .bearer_auth(&token)
            .header("x-vol-tenant", DEV_KIBO_TENANT)
            .header("x-vol-site", "1"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let ana = json!({"emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima", "password": "p"});
    let mut no_password = ana.clone();
    no_password.as_object_mut().unwrap().remove("password");
    let (status, error) = send(call(client.post(&accounts)).json(&no_password)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error["message"],
        json!("Missing or invalid parameter: password is required")
    );

    let (status, created) = send(call(client.post(&accounts)).json(&ana)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["isActive"], json!(true));
    let id = created["id"].as_str().unwrap().to_owned();
    let mut shouting = ana.clone();
    shouting["emailAddress"] = json!("ANA@example.com");
    let (status, error) = send(call(client.post(&accounts)).json(&shouting)).await;
    assert_eq!(
        (status, error["errorCode"].clone()),
        (StatusCode::CONFLICT, json!("ITEM_ALREADY_EXISTS"))
    );

    // PUT wants email, names and password too.
    let account = format!("{accounts}/{id}");
    let (status, error) = send(call(client.put(&account)).json(&no_password)).await;
    assert_eq!(
        (status, error["message"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("Missing or invalid parameter: password is required")
        )
    );
    let mut inactive = ana.clone();
    inactive["isActive"] = json!(false);
    let (status, replaced) = send(call(client.put(&account)).json(&inactive)).await;
    assert_eq!(
        (status, replaced["isActive"].clone()),
        (StatusCode::OK, json!(false))
    );

    let (_, page) = send(call(
        client.get(format!("{accounts}?emailAddress=ana%40example.com")),
    ))
    .await;
    assert_eq!(
        (page["totalCount"].clone(), page["items"][0]["id"].clone()),
        (json!(1), json!(id))
    );

    // Roles: one call each, idempotent, reflected on GET; a PUT neither sets nor clears them.
    let role = |role: &str| format!("{account}/roles/{role}");
    for _ in 0..2 {
        let (status, assigned) = send(call(client.post(role("2")))).await;
        assert_eq!(
            (status, assigned["roleId"].clone()),
            (StatusCode::OK, json!(2))
        );
    }
    assert_eq!(send(call(client.post(role("3")))).await.0, StatusCode::OK);
    let mut with_roles = ana.clone();
    with_roles["roles"] = json!([{"roleId": 1}]);
    let (_, replaced) = send(call(client.put(&account)).json(&with_roles)).await;
    let ids = |account: &Value| -> Vec<Value> {
        account["roles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|role| role["roleId"].clone())
            .collect()
    };
    assert_eq!(ids(&replaced), [json!(2), json!(3)]);
    for _ in 0..2 {
        assert_eq!(
            send(call(client.delete(role("2")))).await.0,
            StatusCode::NO_CONTENT
        );
    }
    let (_, read) = send(call(client.get(&account))).await;
    assert_eq!(ids(&read), [json!(3)]);
    assert_eq!(read["roles"][0]["roleName"], json!("Order Manager"));

    let (status, error) = send(call(client.post(role("99")))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"].as_str().unwrap().contains("roleId 99"),
        "{error}"
    );
    let (status, error) = send(call(
        client.post(format!("{accounts}/no-such-user/roles/2")),
    ))
    .await;
    assert_eq!(
        (status, error["errorCode"].clone()),
        (StatusCode::NOT_FOUND, json!("ITEM_NOT_FOUND"))
    );
    let held = env.emulator(&targets::kibo::VENDOR).account(&id).unwrap();
    assert_eq!(
        held.counts.role_calls, 5,
        "two assigns of 2, one of 3, two removes"
    );
}

#[tokio::test]
async fn a_kibo_tenant_that_keeps_the_password_accepts_a_put_without_it() {
    let mut cfg = SandboxConfig::ephemeral();
    cfg.emulator_mut(&targets::kibo::VENDOR)
        .unwrap()
        .keeps_password_when_omitted = true;
    let env = Env::start_with(cfg).await;
    let emulator = env.emulator(&targets::kibo::VENDOR);
    let id = emulator.insert_account(object(json!({
        "emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima",
        "password": "hand-set"
    })));
    let target = env.target(&targets::kibo::VENDOR, |_| {});
    let renamed = object(json!({
        "emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Souza"
    }));
    let updated = target.update(&id, &renamed).await.unwrap();
    assert_eq!(updated.fields["lastName"], json!("Souza"));
    assert_eq!(
        emulator.secret(&id, "password").as_deref(),
        Some("hand-set")
    );
    let held = emulator.account(&id).unwrap();
    assert_eq!(held.secret_writes, [("password".to_owned(), 1)].into());
    // A create still needs one.
    let new = object(json!({"emailAddress": "bo@example.com", "firstName": "B", "lastName": "O"}));
    match target.create(&new).await {
        Err(TargetError::Rejected {
            status: 400,
            message,
        }) => {
            assert!(message.contains("password is required"), "{message}")
        }
        other => panic!("expected a 400, got {other:?}"),
    }
}

#[tokio::test]
async fn primavera_checks_lengths_enums_and_answers_put_with_204() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::primavera::VENDOR);
    let base = emulator.base_url();
    let origin = emulator.origin();
    let client = Client::new();
    let token_url = format!(
        "{origin}/primediscovery/apitoken/request?scope=http://{}/api",
        emulator.addr()
    );
    assert_eq!(
        send(client.post(&token_url)).await.0,
        StatusCode::UNAUTHORIZED
    );
    let no_scope = format!("{origin}/primediscovery/apitoken/request");
    assert_eq!(
        send(
            client
                .post(&no_scope)
                .basic_auth(DEV_USERNAME, Some(DEV_PASSWORD))
        )
        .await
        .0,
        StatusCode::BAD_REQUEST
    );
    let (status, token) = send(
        client
            .post(&token_url)
            .basic_auth(DEV_USERNAME, Some(DEV_PASSWORD)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (token["expiresIn"].clone(), token["primeTenantCode"].clone()),
        (json!(3_600), json!(DEV_PRIMAVERA_TENANT))
    );
    let access = token["access_token"].as_str().unwrap().to_owned();
    let users = format!("{base}/user");
    let call = |request: RequestBuilder| {
        request
            .bearer_auth(&access)
            .header("x-prime-tenant-code", DEV_PRIMAVERA_TENANT)
    };

    let wrong_tenant = client
        .get(&users)
        .bearer_auth(&access)
        .header("x-prime-tenant-code", "OTHER");
    assert_eq!(send(wrong_tenant).await.0, StatusCode::UNAUTHORIZED);

    let ana = json!({"email": "ana@example.com", "firstName": "Ana", "lastName": "Lima",
                     "userProducts": [{"productName": "TASKS"}, {"productName": "SCHEDULE"}]});
    let broken = |field: &str, value: Value| {
        let mut user = ana.clone();
        user[field] = value;
        user
    };
    let cases = [
        (
            broken("title", json!("x".repeat(26))),
            "title exceeds the maximum length of 25.",
        ),
        (
            broken("email", json!(format!("{}@example.com", "a".repeat(309)))),
            "email exceeds the maximum length of 320.",
        ),
        (
            broken("status", json!("PAUSED")),
            "status must be one of: ACTIVE, INACTIVE.",
        ),
        (
            broken("userLocale", json!("pt_PT")),
            "userLocale must be one of: pt_BR, nl, en, fr, de, it, ja, ko, ru, zh_CN, es, zh_TW.",
        ),
        (
            broken("userType", json!("ROOT")),
            "userType must be one of: USER, COMPANY_RESTRICTED, APPLICATION_ADMIN, IDEA_SUBMITTER.",
        ),
        (
            broken("userProducts", json!([{"productName": "CHESS"}])),
            "userProducts.productName must be one of: IDEA, PORTFOLIO, PROGRESS, SCHEDULE, TASKS.",
        ),
        (
            broken("ldapGuid", json!("")),
            "ldapGuid must be at least 1 character long.",
        ),
        (broken("lastName", Value::Null), "lastName is required."),
        // The input entity is a closed set of fields: one outside it is refused, not dropped.
        (
            broken("department", json!("Finance")),
            "Unrecognized field \"department\".",
        ),
    ];
    for (user, message) in cases {
        let (status, error) = send(call(client.post(&users)).json(&user)).await;
        assert_eq!(
            (status, error["message"].clone()),
            (StatusCode::BAD_REQUEST, json!(message))
        );
    }

    let (status, created) = send(call(client.post(&users)).json(&ana)).await;
    assert_eq!(status, StatusCode::CREATED);
    let user_id = created["userId"].as_i64().unwrap();
    assert_eq!(created["userProducts"].as_array().unwrap().len(), 2);
    assert_eq!(
        send(call(client.post(&users)).json(&broken("firstName", json!("Twin"))))
            .await
            .0,
        StatusCode::CONFLICT
    );

    // PUT names the user in the body, answers 204 and nothing else; a licence goes only when
    // its entry says DELETE.
    let update = json!({"userId": user_id, "email": "ana@example.com", "firstName": "Ana", "lastName": "Souza",
                        "userProducts": [{"productName": "SCHEDULE", "action": "DELETE"}]});
    let response = call(client.put(&users)).json(&update).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(response.text().await.unwrap().is_empty());
    let held = emulator.account(&user_id.to_string()).unwrap();
    assert_eq!(held.fields["lastName"], json!("Souza"));
    let products: Vec<_> = held.fields["userProducts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["productName"].clone())
        .collect();
    assert_eq!(products, vec![json!("TASKS")]);
    let unnamed = json!({"email": "ana@example.com", "firstName": "Ana", "lastName": "Souza"});
    assert_eq!(
        send(call(client.put(&users)).json(&unnamed)).await.0,
        StatusCode::BAD_REQUEST
    );

    let (_, listed) =
        send(call(client.get(&users)).header("filters", "email=ANA@example.com")).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn primavera_allows_55_requests_per_second_then_a_bare_429() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::primavera::VENDOR);
    let client = Client::new();
    let token_url = format!(
        "{}/primediscovery/apitoken/request?scope=x",
        emulator.origin()
    );
    let (_, token) = send(
        client
            .post(&token_url)
            .basic_auth(DEV_USERNAME, Some(DEV_PASSWORD)),
    )
    .await;
    let access = token["access_token"].as_str().unwrap().to_owned();
    let list = || {
        client
            .get(format!("{}/user", emulator.base_url()))
            .bearer_auth(&access)
            .header("x-prime-tenant-code", DEV_PRIMAVERA_TENANT)
            .send()
    };
    env.next_second();
    for _ in 0..55 {
        assert_eq!(list().await.unwrap().status(), StatusCode::OK);
    }
    let throttled = list().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().get("retry-after").is_none());
    env.next_second();
    assert_eq!(list().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn faults_are_set_and_read_through_the_control_endpoint() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::kibo::VENDOR);
    let client = Client::new();
    let faults = format!("{}/_sandbox/faults", emulator.origin());
    // Any API path will do: faults answer before authentication.
    let api = format!("{}/platform/adminuser/accounts", emulator.base_url());
    let set = |value: Value| client.put(&faults).json(&value).send();

    set(json!({"throttle": true, "retry_after": "5"}))
        .await
        .unwrap();
    let (_, shown) = send(client.get(&faults)).await;
    assert_eq!(
        (shown["throttle"].clone(), shown["retry_after"].clone()),
        (json!(true), json!("5"))
    );
    let answer = client.get(&api).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.headers()["retry-after"], "5");

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
    set(json!({"throttle": true, "retry_after": date}))
        .await
        .unwrap();
    let answer = client.get(&api).send().await.unwrap();
    assert_eq!(answer.headers()["retry-after"].to_str().unwrap(), date);

    set(json!({"throttle": true})).await.unwrap();
    let answer = client.get(&api).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(answer.headers().get("retry-after").is_none());

    set(json!({"server_error_share": 1.0})).await.unwrap();
    for _ in 0..5 {
        let (status, error) = send(client.get(&api)).await;
        assert!(
            status == StatusCode::INTERNAL_SERVER_ERROR
                || status == StatusCode::SERVICE_UNAVAILABLE
        );
        assert!(
            error["errorCode"].is_string(),
            "the vendor's own error body: {error}"
        );
    }

    set(json!({"down": true})).await.unwrap();
    assert_eq!(
        send(client.get(&api)).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (status, _) = send(client.get(format!("{}/_sandbox/accounts", emulator.origin()))).await;
    assert_eq!(status, StatusCode::OK, "the control endpoint stays up");

    set(json!({"latency_ms": 150})).await.unwrap();
    let started = Instant::now();
    client.get(&api).send().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150));

    set(json!({"drop_connection": true})).await.unwrap();
    let outcome = match client.get(&api).send().await {
        Ok(response) => response.bytes().await.map(drop),
        Err(err) => Err(err),
    };
    assert!(outcome.is_err(), "the answer must break off");

    let typo = set(json!({"lantency_ms": 1})).await.unwrap();
    assert_eq!(typo.status(), StatusCode::BAD_REQUEST);
    set(json!({})).await.unwrap();
    assert_eq!(
        send(client.get(&api)).await.0,
        StatusCode::UNAUTHORIZED,
        "no fault left: auth applies"
    );
}

#[tokio::test]
async fn the_control_endpoint_lists_counts_expires_tokens_and_resets() {
    let mut cfg = SandboxConfig::ephemeral();
    cfg.emulator_mut(&targets::kibo::VENDOR)
        .unwrap()
        .faults
        .latency_ms = 1;
    let env = Env::start_with(cfg).await;
    let emulator = env.emulator(&targets::kibo::VENDOR);
    let control = |path: &str| format!("{}/_sandbox/{path}", emulator.origin());
    let client = Client::new();
    let target = env.target(&targets::kibo::VENDOR, |_| {});
    let ana = object(
        json!({"emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima", "password": "p"}),
    );
    let created = target.create(&ana).await.unwrap();
    target.update(&created.id, &ana).await.unwrap();
    target.update(&created.id, &ana).await.unwrap();
    let bo = object(
        json!({"emailAddress": "bo@example.com", "firstName": "Bo", "lastName": "Ek", "password": "p"}),
    );
    let gone = target.create(&bo).await.unwrap();
    target.delete(&gone.id).await.unwrap();

    let (_, listed) = send(client.get(control("accounts"))).await;
    let summary: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|account| {
            (
                account["fields"]["emailAddress"].clone(),
                account["counts"].clone(),
                account["deleted"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                json!("ana@example.com"),
                json!({"creates": 1, "updates": 2, "deletes": 0, "role_calls": 0}),
                json!(false)
            ),
            (
                json!("bo@example.com"),
                json!({"creates": 1, "updates": 0, "deletes": 1, "role_calls": 0}),
                json!(true)
            ),
        ]
    );
    assert_eq!(listed[0]["secrets_set"], json!(["password"]));
    assert!(listed[0]["fields"].get("password").is_none());

    let logins = emulator.logins();
    assert_eq!(
        client
            .post(control("expire-tokens"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    assert!(target.read(&created.id).await.unwrap().is_some());
    assert_eq!(
        emulator.logins(),
        logins + 1,
        "the expired token forced a new login"
    );

    emulator.set_faults(scim_bridge::sandbox::Faults {
        down: true,
        ..Default::default()
    });
    assert_eq!(
        client.post(control("reset")).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert!(emulator.accounts().is_empty());
    assert_eq!((emulator.requests(), emulator.logins()), (0, 0));
    assert_eq!(
        emulator.faults().latency_ms,
        1,
        "back to the configured faults"
    );
    assert!(!emulator.faults().down);
}

#[tokio::test]
async fn faults_can_be_configured_at_start() {
    let mut cfg = SandboxConfig::ephemeral();
    cfg.emulator_mut(&targets::appgate::VENDOR)
        .unwrap()
        .faults
        .down = true;
    let env = Env::start_with(cfg).await;
    let login = format!(
        "{}/login",
        env.emulator(&targets::appgate::VENDOR).base_url()
    );
    let (status, error) = send(Client::new().post(login).header("accept", accept(20))).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error["id"], json!("service unavailable"));
}

#[tokio::test]
async fn the_default_targets_point_at_each_emulator() {
    let env = Env::start().await;
    let targets = env.sandbox.targets_config().unwrap();
    for target in targets.values() {
        assert_eq!(target.base_url, env.emulator(target.kind()).base_url());
    }
    assert_eq!(targets.len(), 4);
}

/// What a person does in Appgate's console, through the control endpoint: the account is
/// made, edited and deleted as the API then sees it, with no auth, untouched by faults, and
/// counted apart from the API's counts.
#[tokio::test]
async fn hand_edits_through_the_control_endpoint_are_seen_by_the_api_and_counted_apart() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::appgate::VENDOR);
    let control = |path: &str| format!("{}/_sandbox/{path}", emulator.origin());
    let client = Client::new();
    let target = env.target(&targets::appgate::VENDOR, |_| {});
    // A token the adapter holds before the hand edits, so none of them needs a login.
    assert!(target
        .read("4c07bc67-57ea-42dd-b702-c2d6c45419fc")
        .await
        .unwrap()
        .is_none());
    let requests = emulator.requests();

    let (status, made) = send(client.post(control("accounts")).json(&json!({
        "name": "ana", "firstName": "Ana", "lastName": "Lima", "email": "ana@example.com",
        "password": "typed-by-hand", "tags": ["vpn-admins"]
    })))
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["fields"]["id"], json!(id), "the id the vendor gave");
    assert_eq!(made["secrets_set"], json!(["password"]));
    assert!(made["fields"].get("password").is_none());
    let zero = json!({"creates": 0, "updates": 0, "deletes": 0, "role_calls": 0});
    assert_eq!(made["counts"], zero);
    let (_, listed) = send(client.get(control("accounts"))).await;
    assert_eq!(
        listed[0]["id"],
        json!(id),
        "the id GET /_sandbox/accounts shows"
    );
    let read = target.read(&id).await.unwrap().unwrap();
    assert_eq!(read.fields["lastName"], json!("Lima"));

    // Faults stop the API, not a person in the console.
    emulator.set_faults(scim_bridge::sandbox::Faults {
        down: true,
        ..Default::default()
    });
    let (status, edited) = send(
        client
            .patch(control(&format!("accounts/{id}")))
            .json(&json!({"firstName": "Edited", "email": null})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{edited}");
    assert_eq!(edited["fields"]["firstName"], json!("Edited"));
    assert!(edited["fields"].get("email").is_none(), "null clears");
    assert_eq!(
        edited["fields"]["lastName"],
        json!("Lima"),
        "the rest stays"
    );
    assert_eq!(edited["counts"], zero);
    emulator.set_faults(scim_bridge::sandbox::Faults::default());
    let read = target.read(&id).await.unwrap().unwrap();
    assert_eq!(read.fields["firstName"], json!("Edited"));

    let deleted = client
        .delete(control(&format!("accounts/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(target.read(&id).await.unwrap(), None);
    let gone = emulator.accounts().into_iter().next().unwrap();
    assert!(gone.deleted);
    assert_eq!(gone.counts.deletes, 0, "not an API delete");

    let (_, stats) = send(client.get(control("stats"))).await;
    assert_eq!(
        stats["console"],
        json!({"creates": 1, "updates": 1, "deletes": 1})
    );
    assert_eq!(
        emulator.requests(),
        requests + 3,
        "the adapter's three reads, and no hand edit"
    );
    assert_eq!(stats["requests"], json!(emulator.requests()));
    assert_eq!(stats["accounts"], json!(0));

    assert_eq!(
        client.post(control("reset")).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (_, stats) = send(client.get(control("stats"))).await;
    assert_eq!(
        stats["console"],
        json!({"creates": 0, "updates": 0, "deletes": 0})
    );
}

/// The control calls refuse what they cannot do, in the vendor's error shape with a
/// `message`: a body that is not an object, an id no live account has, a field the vendor's
/// accounts lack or one the vendor assigns.
#[tokio::test]
async fn hand_edits_refuse_bad_bodies_and_unknown_ids() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::kibo::VENDOR);
    let control = |path: &str| format!("{}/_sandbox/{path}", emulator.origin());
    let client = Client::new();
    let ana = json!({"emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima"});
    let (_, made) = send(client.post(control("accounts")).json(&ana)).await;
    let id = made["id"].as_str().unwrap().to_owned();
    let account = control(&format!("accounts/{id}"));

    let refusals = [
        (
            client
                .post(control("accounts"))
                .json(&json!(["not", "an", "object"])),
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            client
                .post(control("accounts"))
                .header("content-type", "application/json")
                .body("{broken"),
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            client.patch(&account).json(&json!("Edited")),
            StatusCode::BAD_REQUEST,
            "must be a JSON object",
        ),
        (
            client
                .patch(&account)
                .json(&json!({"department": "Finance"})),
            StatusCode::BAD_REQUEST,
            "`department` is not a field",
        ),
        (
            client.patch(&account).json(&json!({"id": "other"})),
            StatusCode::BAD_REQUEST,
            "`id` is assigned by the vendor",
        ),
        (
            client
                .patch(control("accounts/no-such-id"))
                .json(&json!({"firstName": "Edited"})),
            StatusCode::NOT_FOUND,
            "no live account has the id \"no-such-id\"",
        ),
        (
            client.delete(control("accounts/no-such-id")),
            StatusCode::NOT_FOUND,
            "no live account has the id",
        ),
    ];
    for (request, status, words) in refusals {
        let (got, error) = send(request).await;
        assert_eq!(got, status, "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(words), "{message:?} lacks {words:?}");
        assert!(error["errorCode"].is_string(), "Kibo's shape: {error}");
    }
    assert_eq!(
        client.delete(&account).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    let (status, _) = send(client.delete(&account)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleted twice");
    let (_, stats) = send(client.get(control("stats"))).await;
    assert_eq!(
        stats["console"],
        json!({"creates": 1, "updates": 0, "deletes": 1}),
        "refused calls count nothing"
    );
}

/// A console refuses what the vendor refuses: each emulator holds hand-made accounts to its
/// own rules and uniqueness, in its own words, whether made or edited by hand.
#[tokio::test]
async fn hand_edits_go_through_each_vendors_own_rules() {
    // vendor, a valid account, another holding the same unique value, a change that
    // breaks a rule, its status and words.
    type Row = (
        &'static targets::vendor::Vendor,
        Value,
        Value,
        Value,
        u16,
        &'static str,
    );
    let rows: [Row; 4] = [
        (
            &targets::appgate::VENDOR,
            json!({"name": "ana", "firstName": "Ana", "lastName": "Lima"}),
            json!({"name": "ANA", "firstName": "Other", "lastName": "One"}),
            json!({"lastName": null}),
            422,
            "lastName: may not be null",
        ),
        (
            &targets::vikingcloud::VENDOR,
            json!({"userKey": {"username": "ana", "authenticator": "local"}, "email": "ana@example.com"}),
            json!({"userKey": {"username": "ana", "authenticator": "local"}, "email": "other@example.com"}),
            json!({"primaryPhone": "5550100"}),
            400,
            "primaryPhoneCountryCode is mandatory",
        ),
        (
            // Nobody types someone else's password in Kibo's console: none is needed.
            &targets::kibo::VENDOR,
            json!({"emailAddress": "ana@example.com", "firstName": "Ana", "lastName": "Lima"}),
            json!({"emailAddress": "ANA@example.com", "firstName": "O", "lastName": "O"}),
            json!({"emailAddress": "not-an-address"}),
            400,
            "emailAddress is not an email address",
        ),
        (
            &targets::primavera::VENDOR,
            json!({"email": "ana@example.com", "firstName": "Ana", "lastName": "Lima"}),
            json!({"email": "ana@EXAMPLE.com", "firstName": "O", "lastName": "O"}),
            json!({"title": "x".repeat(26)}),
            400,
            "title exceeds the maximum length of 25",
        ),
    ];
    let env = Env::start().await;
    let client = Client::new();
    for (vendor, valid, twin, breaking, status, words) in rows {
        let emulator = env.emulator(vendor);
        let accounts = format!("{}/_sandbox/accounts", emulator.origin());
        let (got, made) = send(client.post(&accounts).json(&valid)).await;
        assert_eq!(got, StatusCode::CREATED, "{vendor:?}: {made}");
        let id = made["id"].as_str().unwrap().to_owned();

        let (got, error) = send(client.post(&accounts).json(&twin)).await;
        assert_eq!(got, StatusCode::CONFLICT, "{vendor:?}: {error}");

        let (got, error) = send(client.patch(format!("{accounts}/{id}")).json(&breaking)).await;
        assert_eq!(got.as_u16(), status, "{vendor:?}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(words),
            "{vendor:?}: {message:?} lacks {words:?}"
        );

        let mut broken = valid.clone();
        for (field, value) in breaking.as_object().unwrap() {
            broken[field] = value.clone();
        }
        let (got, _) = send(client.post(&accounts).json(&broken)).await;
        assert_eq!(
            got.as_u16(),
            status,
            "{vendor:?}: the same rule on a create"
        );

        // The twin's unique value cannot be taken by an edit either.
        let (_, other) = send(client.post(&accounts).json(&made_other(vendor))).await;
        let other_id = other["id"].as_str().unwrap().to_owned();
        let (got, error) = send(client.patch(format!("{accounts}/{other_id}")).json(&twin)).await;
        assert_eq!(got, StatusCode::CONFLICT, "{vendor:?}: {error}");

        let held = emulator.account(&id).unwrap();
        assert_eq!(
            held.fields,
            made["fields"].as_object().unwrap().clone(),
            "{vendor:?}: unchanged"
        );
    }
}

/// A second valid account for each vendor, unlike the first in every unique value.
fn made_other(vendor: &targets::vendor::Vendor) -> Value {
    match vendor.kind {
        "appgate" => json!({"name": "bo", "firstName": "Bo", "lastName": "Ek"}),
        "vikingcloud" => json!({"userKey": {"username": "bo", "authenticator": "local"}}),
        "kibo" => json!({"emailAddress": "bo@example.com", "firstName": "Bo", "lastName": "Ek"}),
        _ => json!({"email": "bo@example.com", "firstName": "Bo", "lastName": "Ek"}),
    }
}

/// Primavera's user list pages with `offset` and `limit` in ascending `userId` order and
/// links the pages beside each one; without them it is the whole list.
#[tokio::test]
async fn primavera_pages_its_user_list_with_offset_and_limit() {
    let env = Env::start().await;
    let emulator = env.emulator(&targets::primavera::VENDOR);
    for who in ["a", "b", "c", "d", "e"] {
        emulator.insert_account(object(json!({
            "email": format!("{who}@example.com"), "firstName": who, "lastName": who
        })));
    }
    let client = Client::new();
    let token_url = format!(
        "{}/primediscovery/apitoken/request?scope=x",
        emulator.origin()
    );
    let (_, token) = send(
        client
            .post(&token_url)
            .basic_auth(DEV_USERNAME, Some(DEV_PASSWORD)),
    )
    .await;
    let access = token["access_token"].as_str().unwrap().to_owned();
    let users = |query: &str| {
        client
            .get(format!("{}/user{query}", emulator.base_url()))
            .bearer_auth(&access)
            .header("x-prime-tenant-code", DEV_PRIMAVERA_TENANT)
    };
    let emails = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|user| user["email"].as_str().unwrap().to_owned())
            .collect()
    };

    let (status, first) = send(users("?offset=0&limit=2")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(emails(&first), ["a@example.com", "b@example.com"]);
    assert_eq!(first["count"], json!(2));
    assert_eq!(first["next"], json!("/api/restapi/user?offset=2&limit=2"));
    assert_eq!(first["previous"], Value::Null);
    let (_, last) = send(users("?offset=4&limit=2")).await;
    assert_eq!(emails(&last), ["e@example.com"]);
    assert_eq!(last["next"], Value::Null);
    assert_eq!(
        last["previous"],
        json!("/api/restapi/user?offset=2&limit=2")
    );
    let (_, beyond) = send(users("?offset=9&limit=2")).await;
    assert_eq!(
        (beyond["count"].clone(), beyond["next"].clone()),
        (json!(0), Value::Null)
    );

    let (status, error) = send(users("?limit=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error["message"],
        json!("Invalid input: limit must be at least 1.")
    );
    let (_, whole) = send(users("")).await;
    assert_eq!(
        whole.as_array().unwrap().len(),
        5,
        "unpaged: the whole list"
    );
    env.next_second();
}
