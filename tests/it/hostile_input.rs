//! Hostile SCIM input against the real server: each case gets its RFC 7644 error body, the
//! server keeps answering, and nothing stored changes.

use reqwest::Method;
use serde_json::{json, Value};

use scim_bridge::scim::filter::{MAX_FILTER_CLAUSES, MAX_FILTER_DEPTH};
use scim_bridge::scim::patch::MAX_PATCH_OPERATIONS;
use scim_bridge::scim::resource::MAX_STRING_BYTES;
use scim_bridge::scim::schema::{MAX_ATTRIBUTE_VALUES, MAX_GROUP_MEMBERS};

use crate::support::{assert_scim_error, group, json_of, user, TestApp, TOKEN};

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const BULK_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";

/// One hostile request and the error it must get.
struct Case {
    name: String,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    /// Content type and bytes.
    body: Option<(&'static str, Vec<u8>)>,
    status: u16,
    scim_type: Option<&'static str>,
}

impl Case {
    fn new(name: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Case {
            name: name.into(),
            method,
            path: path.into(),
            headers: Vec::new(),
            body: None,
            status: 400,
            scim_type: None,
        }
    }

    fn json(self, body: &Value) -> Self {
        self.raw("application/scim+json", body.to_string())
    }

    fn raw(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some((content_type, body.into()));
        self
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    fn answers(mut self, status: u16, scim_type: Option<&'static str>) -> Self {
        self.status = status;
        self.scim_type = scim_type;
        self
    }
}

fn patch_body(operations: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": operations})
}

fn search_body(filter: &str) -> Value {
    json!({"schemas": [SEARCH_SCHEMA], "filter": filter})
}

fn emails(count: usize) -> Value {
    (0..count)
        .map(|n| json!({"value": format!("u{n}@example.com")}))
        .collect()
}

fn user_with(name: &str, attribute: &str, value: Value) -> Value {
    let mut body = user(name);
    body[attribute] = value;
    body
}

/// Everything stored, as the API shows it (ids, versions and all).
async fn stored(app: &TestApp) -> (Value, Value) {
    let users = json_of(app.get("/Users?count=1000").await, 200).await;
    let groups = json_of(app.get("/Groups?count=1000").await, 200).await;
    (users, groups)
}

fn filter_cases(user_path: &str) -> Vec<Case> {
    let clause = "userName eq \"u0\"";
    let nested = format!("{}{clause}{}", "(".repeat(1_500), ")".repeat(1_500));
    let negated = format!("{}{clause}{}", "not (".repeat(1_200), ")".repeat(1_200));
    let ored = vec![clause; 10_000].join(" or ");
    let anded = vec!["title pr"; MAX_FILTER_CLAUSES + 1].join(" and ");
    let too_deep = format!(
        "{}{clause}{}",
        "(".repeat(MAX_FILTER_DEPTH + 1),
        ")".repeat(MAX_FILTER_DEPTH + 1)
    );
    let value_path = format!(
        "emails[{}]",
        (0..10_000)
            .map(|n| format!("value eq \"u{n}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    let invalid_filter = Some("invalidFilter");
    let mut cases = vec![
        Case::new(
            "3 KB of nested parentheses in ?filter",
            Method::GET,
            format!("/Users?filter={}", urlencode(&nested)),
        ),
        Case::new(
            "nested 'not (' in ?filter",
            Method::GET,
            format!("/Users?filter={}", urlencode(&negated)),
        ),
        Case::new(
            "one level past the nesting limit",
            Method::GET,
            format!("/Groups?filter={}", urlencode(&too_deep)),
        ),
        Case::new(
            "10,000 'or' clauses in /Users/.search",
            Method::POST,
            "/Users/.search",
        )
        .json(&search_body(&ored)),
        Case::new("10,000 'or' clauses in /.search", Method::POST, "/.search")
            .json(&search_body(&ored)),
        Case::new("nested parentheses in /.search", Method::POST, "/.search")
            .json(&search_body(&nested)),
        Case::new("one clause past the limit", Method::POST, "/Users/.search")
            .json(&search_body(&anded)),
        Case::new(
            "a filter value longer than a filter may be",
            Method::POST,
            "/Users/.search",
        )
        .json(&search_body(&format!(
            "userName eq \"{}\"",
            "x".repeat(20_000)
        ))),
        Case::new(
            "a long attribute name in a filter",
            Method::POST,
            "/Users/.search",
        )
        .json(&search_body(&format!("{} pr", "a".repeat(4_000)))),
        Case::new(
            "a PATCH path filtering on 10,000 'or' clauses",
            Method::PATCH,
            user_path,
        )
        .json(&patch_body(
            json!([{"op": "replace", "path": format!("{value_path}.type"), "value": "work"}]),
        )),
    ];
    for case in &mut cases {
        case.scim_type = invalid_filter;
    }
    cases
}

fn size_cases(user_path: &str, group_path: &str) -> Vec<Case> {
    let too_many = Some("tooMany");
    let one_op = json!({"op": "add", "path": "emails", "value": {"value": "x@example.com"}});
    vec![
        Case::new("one PATCH operation past the limit", Method::PATCH, user_path)
            .json(&patch_body(Value::Array(vec![
                one_op;
                MAX_PATCH_OPERATIONS + 1
            ])))
            .answers(400, too_many),
        Case::new("a PATCH adding too many emails", Method::PATCH, user_path)
            .json(&patch_body(json!([{
                "op": "add", "path": "emails", "value": emails(MAX_ATTRIBUTE_VALUES + 1)
            }])))
            .answers(400, too_many),
        Case::new("a POST with too many emails", Method::POST, "/Users")
            .json(&user_with(
                "many",
                "emails",
                emails(MAX_ATTRIBUTE_VALUES + 1),
            ))
            .answers(400, too_many),
        Case::new("a PUT with too many emails", Method::PUT, user_path)
            .json(&user_with(
                "victim",
                "emails",
                emails(MAX_ATTRIBUTE_VALUES + 1),
            ))
            .answers(400, too_many),
        Case::new("a PATCH adding too many members", Method::PATCH, group_path)
            .json(&patch_body(json!([{
                "op": "add", "path": "members",
                "value": (0..=MAX_GROUP_MEMBERS).map(|n| json!({"value": format!("m{n}")})).collect::<Value>()
            }])))
            .answers(400, too_many),
    ]
}

fn value_cases(user_path: &str) -> Vec<Case> {
    let invalid_value = Some("invalidValue");
    let mut cases = Vec::new();
    let names = [
        ("NUL", "ana\u{0}"),
        ("CR/LF", "ana\r\nX-Injected: 1"),
        ("an ANSI escape", "\u{1b}[2J\u{1b}[31mana"),
        ("a right-to-left override", "ana\u{202E}nimda"),
        ("a zero-width space", "ad\u{200B}min"),
        ("a byte order mark", "\u{FEFF}ana"),
    ];
    for (what, name) in names {
        cases.push(
            Case::new(format!("POST userName with {what}"), Method::POST, "/Users")
                .json(&user(name))
                .answers(400, invalid_value),
        );
        cases.push(
            Case::new(format!("PUT userName with {what}"), Method::PUT, user_path)
                .json(&user(name))
                .answers(400, invalid_value),
        );
        cases.push(
            Case::new(
                format!("PATCH userName with {what}"),
                Method::PATCH,
                user_path,
            )
            .json(&patch_body(
                json!([{"op": "replace", "path": "userName", "value": name}]),
            ))
            .answers(400, invalid_value),
        );
    }
    cases.extend([
        Case::new("a display name with a line feed", Method::PATCH, user_path)
            .json(&patch_body(
                json!([{"op": "replace", "value": {"displayName": "A\nB"}}]),
            ))
            .answers(400, invalid_value),
        Case::new("an email with CR/LF", Method::PATCH, user_path)
            .json(&patch_body(
                json!([{"op": "add", "path": "emails", "value": "a@example.com\r\nBcc: x"}]),
            ))
            .answers(400, invalid_value),
        Case::new(
            "a userName longer than a string may be",
            Method::POST,
            "/Users",
        )
        .json(&user(&"x".repeat(MAX_STRING_BYTES + 1)))
        .answers(400, invalid_value),
        Case::new("a number too large for JSON", Method::POST, "/Users")
            .raw(
                "application/scim+json",
                user("big").to_string().replace("true", "1e400"),
            )
            .answers(400, Some("invalidSyntax")),
        Case::new("a huge number where a boolean goes", Method::POST, "/Users")
            .json(&user_with("big", "active", json!(u64::MAX)))
            .answers(400, invalid_value),
        Case::new(
            "an unpaired surrogate in a JSON escape",
            Method::POST,
            "/Users",
        )
        .raw(
            "application/scim+json",
            format!(r#"{{"schemas": ["{USER_SCHEMA}"], "userName": "a\ud800b"}}"#),
        )
        .answers(400, Some("invalidSyntax")),
        Case::new("JSON nested 10,000 deep", Method::POST, "/Users")
            .raw(
                "application/scim+json",
                format!(
                    r#"{{"schemas": ["{USER_SCHEMA}"], "userName": "deep", "name": {}1{}}}"#,
                    "[".repeat(10_000),
                    "]".repeat(10_000)
                ),
            )
            .answers(400, Some("invalidSyntax")),
        Case::new("JSON nested 100 deep", Method::POST, "/Users")
            .raw(
                "application/scim+json",
                format!(
                    r#"{{"schemas": ["{USER_SCHEMA}"], "userName": "deep", "name": {}1{}}}"#,
                    "{\"givenName\": ".repeat(100),
                    "}".repeat(100)
                ),
            )
            .answers(400, invalid_value),
    ]);
    cases
}

fn name_cases(user_path: &str, user_id: &str) -> Vec<Case> {
    let long = "a".repeat(10_000);
    let lookalike = "urn:ietf:params:scim:schemas:core:2.0:Us\u{0435}r";
    vec![
        Case::new(
            "a long attribute name in a PATCH path",
            Method::PATCH,
            user_path,
        )
        .json(&patch_body(
            json!([{"op": "replace", "path": long.clone(), "value": "x"}]),
        ))
        .answers(400, Some("invalidPath")),
        Case::new("a long key in a POST body", Method::POST, "/Users")
            .json(&user_with("longkey", &long, json!("x")))
            .answers(400, Some("invalidSyntax")),
        Case::new(
            "a long sortBy",
            Method::GET,
            format!("/Users?sortBy={long}"),
        )
        .answers(400, Some("invalidPath")),
        Case::new(
            "a long attributes list entry",
            Method::GET,
            format!("/Users?attributes=userName,{long}"),
        )
        .answers(400, Some("invalidPath")),
        Case::new(
            "thousands of attributes",
            Method::GET,
            format!("/Users?attributes={}", vec!["userName"; 5_000].join(",")),
        )
        .answers(400, Some("invalidValue")),
        Case::new(
            "thousands of excludedAttributes in /.search",
            Method::POST,
            "/.search",
        )
        .json(&json!({"schemas": [SEARCH_SCHEMA], "excludedAttributes": vec!["title"; 5_000]}))
        .answers(400, Some("invalidValue")),
        Case::new(
            "a long id in the path",
            Method::GET,
            format!("/Users/{long}"),
        )
        .answers(404, None),
        Case::new("a long If-Match", Method::PUT, user_path)
            .header("If-Match", format!("W/\"{}\"", "9".repeat(8_000)))
            .json(&user("victim"))
            .answers(412, None),
        Case::new(
            "a startIndex past i64",
            Method::GET,
            "/Users?startIndex=99999999999999999999999",
        )
        .answers(400, Some("invalidValue")),
        Case::new("a lookalike core schema URN", Method::POST, "/Users")
            .json(&json!({"schemas": [lookalike], "userName": "look"}))
            .answers(400, Some("invalidSyntax")),
        Case::new("a lookalike extension key", Method::PUT, user_path)
            .json(&user_with(
                "victim",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:Us\u{0435}r",
                json!({"department": "x"}),
            ))
            .answers(400, Some("invalidSyntax")),
        Case::new("a lookalike PatchOp URN", Method::PATCH, user_path)
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:Patch\u{039F}p"],
                "Operations": [{"op": "replace", "path": "title", "value": "x"}]
            }))
            .answers(400, Some("invalidSyntax")),
        Case::new(
            "a user's id under /Groups",
            Method::PATCH,
            format!("/Groups/{user_id}"),
        )
        .json(&patch_body(
            json!([{"op": "replace", "path": "displayName", "value": "x"}]),
        ))
        .answers(404, None),
    ]
}

fn http_cases(user_path: &str) -> Vec<Case> {
    vec![
        Case::new("malformed JSON", Method::POST, "/Users")
            .raw("application/scim+json", "{\"schemas\": [")
            .answers(400, Some("invalidSyntax")),
        Case::new("a text/plain body", Method::PATCH, user_path)
            .raw("text/plain", "hello")
            .answers(415, None),
        Case::new("an unknown path under /Users", Method::GET, "/Users/a/b/c").answers(404, None),
        Case::new("an unknown resource type", Method::GET, "/Widgets").answers(404, None),
        Case::new("an id that is not UTF-8", Method::GET, "/Users/%FF%FE").answers(404, None),
        Case::new("DELETE on the collection", Method::DELETE, "/Users").answers(405, None),
        Case::new("PATCH on the collection", Method::PATCH, "/Groups")
            .json(&patch_body(json!([])))
            .answers(405, None),
        Case::new(
            "a filter with broken percent-escapes",
            Method::GET,
            "/Users?filter=%ZZ%",
        )
        .answers(400, Some("invalidFilter")),
        Case::new("a body past the size limit", Method::POST, "/Users")
            .raw("application/scim+json", vec![b' '; 2 * 1024 * 1024])
            .answers(413, None),
    ]
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn hostile_requests_get_scim_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let victim = app.create_user(&user("victim")).await;
    let user_id = victim["id"].as_str().unwrap().to_owned();
    let team = app.create_group(&group("team", &[&user_id])).await;
    let user_path = format!("/Users/{user_id}");
    let group_path = format!("/Groups/{}", team["id"].as_str().unwrap());
    let before = stored(&app).await;

    let cases = [
        filter_cases(&user_path),
        size_cases(&user_path, &group_path),
        value_cases(&user_path),
        name_cases(&user_path, &user_id),
        http_cases(&user_path),
    ];
    let mut failures = Vec::new();
    for case in cases.into_iter().flatten() {
        // Each on a client of its own: the server may close a connection after refusing a
        // request (413, 431), and the pooled client that reads what is stored must never be
        // handed that dead connection.
        let mut request = reqwest::Client::new()
            .request(case.method.clone(), app.url(&case.path))
            .bearer_auth(TOKEN);
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some((content_type, body)) = case.body {
            request = request.header("Content-Type", content_type).body(body);
        }
        let outcome = match request.send().await {
            Ok(response) => scim_error_of(response, case.status, case.scim_type).await,
            Err(err) => Err(format!("no answer: {err}")),
        };
        if let Err(why) = outcome {
            failures.push(format!("{}: {why}", case.name));
        }
        if stored(&app).await != before {
            failures.push(format!("{}: changed what is stored", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Huge headers: actix answers 431 (with no body, before any route or middleware runs)
    // when they arrive in pieces past its 32 KiB buffer, but parses them whole when one read
    // brings them all, so which of the two comes back depends on the socket's timing. Either
    // way the server keeps serving and nothing is stored.
    // On a client of its own: after a 431 actix closes the connection, and a pooled client
    // could pick that dead connection for the next request.
    let response = reqwest::Client::new()
        .get(app.url("/Users"))
        .bearer_auth(TOKEN)
        .header("X-Padding", "p".repeat(200 * 1024))
        .send()
        .await
        .unwrap();
    assert!(
        [200, 431].contains(&response.status().as_u16()),
        "{}",
        response.status()
    );
    assert_eq!(stored(&app).await, before);
    let after = app.request(Method::GET, "/Users").send().await.unwrap();
    assert_eq!(after.status(), 200, "the server still answers");
}

/// Whether the response is the RFC 7644 error expected, with a bounded detail.
async fn scim_error_of(
    response: reqwest::Response,
    status: u16,
    scim_type: Option<&str>,
) -> Result<(), String> {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().await.map_err(|e| e.to_string())?;
    let shown = || text.chars().take(300).collect::<String>();
    let body: Value = serde_json::from_str(&text)
        .map_err(|_| format!("status {actual}, body not JSON: {:?}", shown()))?;
    let expected = json!({
        "status": status.to_string(),
        "scimType": scim_type,
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
        "content_type": "application/scim+json",
    });
    let found = json!({
        "status": body["status"],
        "scimType": body["scimType"],
        "schemas": body["schemas"],
        "content_type": content_type,
    });
    let detail_ok = body["detail"]
        .as_str()
        .is_some_and(|d| !d.is_empty() && d.len() <= 1_100);
    if actual != status || found != expected || !detail_ok {
        return Err(format!("status {actual}, {found} {}", shown()));
    }
    Ok(())
}

#[tokio::test]
async fn hostile_bulk_operations_fail_one_by_one_and_duplicate_bulk_ids_are_refused() {
    let app = TestApp::spawn().await;
    let victim = app.create_user(&user("victim")).await;
    let victim_path = format!("/Users/{}", victim["id"].as_str().unwrap());
    let before = stored(&app).await;
    let bulk = |operations: Value| json!({"schemas": [BULK_SCHEMA], "Operations": operations});

    let duplicate = bulk(json!([
        {"method": "POST", "path": "/Users", "bulkId": "same", "data": user("first")},
        {"method": "POST", "path": "/Users", "bulkId": "same", "data": user("second")},
        {"method": "POST", "path": "/Groups", "bulkId": "g",
         "data": group("team", &["bulkId:same"])}
    ]));
    let body = assert_scim_error(
        app.post("/Bulk", &duplicate).await,
        400,
        Some("invalidValue"),
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("same"), "{body}");
    assert_eq!(stored(&app).await, before, "nothing of the request ran");

    let hostile = bulk(json!([
        {"method": "POST", "path": "/Users", "bulkId": "nul", "data": user("nul\u{0}")},
        {"method": "POST", "path": "/Users", "bulkId": "many",
         "data": user_with("many", "emails", emails(MAX_ATTRIBUTE_VALUES + 1))},
        {"method": "PATCH", "path": victim_path,
         "data": patch_body(json!([{"op": "replace", "path": format!("emails[{}]", vec!["value pr"; 300].join(" or ")), "value": {}}]))},
        {"method": "PUT", "path": victim_path, "data": user("victim\r\n")}
    ]));
    let answer = json_of(app.post("/Bulk", &hostile).await, 200).await;
    let outcomes: Vec<(String, Value)> = answer["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            (
                op["status"].as_str().unwrap().to_owned(),
                op["response"]["scimType"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            ("400".to_owned(), json!("invalidValue")),
            ("400".to_owned(), json!("tooMany")),
            ("400".to_owned(), json!("invalidFilter")),
            ("400".to_owned(), json!("invalidValue")),
        ],
        "{answer}"
    );
    assert_eq!(stored(&app).await, before);
}
