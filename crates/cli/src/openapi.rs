//! `dfs openapi`: a service's OpenAPI document (the one it serves at
//! `/openapi.json`), or the Postman collection of every service made from
//! the same documents, the one kept in `docs/postman/` (a test checks it is
//! current).

use crate::args::ApiService;
use serde_json::{json, Map, Value};

/// Prints a document or, with `postman`, the collection.
pub(crate) fn print(service: Option<ApiService>, postman: bool) -> anyhow::Result<()> {
    let text = if postman {
        serde_json::to_string_pretty(&postman_collection())?
    } else {
        serde_json::to_string_pretty(&document(service.unwrap_or(ApiService::Directory)))?
    };
    match std::io::Write::write_all(&mut std::io::stdout(), format!("{text}\n").as_bytes()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}

/// The services, with the Postman variable holding each one's base URL and its `dfs up` default.
const SERVICES: [(ApiService, &str, &str); 3] = [
    (ApiService::Directory, "directory_url", "http://127.0.0.1:7070"),
    (ApiService::Security, "auth_url", "http://127.0.0.1:7071"),
    (ApiService::FileServer, "file_server_url", "http://127.0.0.1:7072"),
];

/// The OpenAPI document of `service`, as JSON.
fn document(service: ApiService) -> Value {
    let doc = match service {
        ApiService::Directory => dfs_meta::http::openapi(),
        ApiService::Security => dfs_auth::http::openapi(),
        ApiService::FileServer => dfs_chunk::http::openapi(),
    };
    serde_json::to_value(doc).expect("an OpenAPI document is JSON")
}

/// The Postman collection (format v2.1) of every service: a folder per
/// service, one per tag inside, one request per operation, with the base
/// URLs, the ticket and the capability as collection variables. Logging in
/// stores the ticket it answers in `{{ticket}}`.
fn postman_collection() -> Value {
    let mut folders = Vec::new();
    for (service, url_variable, _) in SERVICES {
        let doc = document(service);
        folders.push(service_folder(&doc, url_variable));
    }
    let mut variables: Vec<Value> = SERVICES
        .iter()
        .map(|(_, name, default)| json!({ "key": name, "value": default }))
        .collect();
    variables.push(json!({ "key": "ticket", "value": "", "description": "set by a login request" }));
    variables.push(json!({ "key": "capability", "value": "", "description": "a chunk capability from the directory service (x-dfs-capability)" }));
    json!({
        "info": {
            "name": "DFS",
            "description": "The HTTP API of DFS, generated from the services' OpenAPI documents by `dfs openapi --postman`. \
                Set the base URLs (defaults: `dfs up`), run a login request (it stores the ticket), then any call.",
            "schema": "https://schema.getpostman.com/json/collection/v2.1.0/collection.json",
        },
        "auth": bearer_auth(),
        "variable": variables,
        "item": folders,
    })
}

fn bearer_auth() -> Value {
    json!({ "type": "bearer", "bearer": [{ "key": "token", "value": "{{ticket}}", "type": "string" }] })
}

/// One service's folder: its operations grouped by their first tag.
fn service_folder(doc: &Value, url_variable: &str) -> Value {
    let mut by_tag: Vec<(String, Vec<Value>)> = Vec::new();
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    for (path, item) in &paths {
        for method in ["get", "put", "post", "delete", "patch", "head", "options"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let tag = operation["tags"][0].as_str().unwrap_or("other").to_string();
            let request = request_item(doc, url_variable, path, method, operation);
            match by_tag.iter_mut().find(|(name, _)| *name == tag) {
                Some((_, items)) => items.push(request),
                None => by_tag.push((tag, vec![request])),
            }
        }
    }
    let items: Vec<Value> = by_tag
        .into_iter()
        .map(|(tag, items)| json!({ "name": tag, "item": items }))
        .collect();
    json!({
        "name": doc["info"]["title"],
        "description": doc["info"]["description"],
        "item": items,
    })
}

/// One request of the collection.
fn request_item(doc: &Value, url_variable: &str, path: &str, method: &str, operation: &Value) -> Value {
    let mut query = Vec::new();
    let mut headers = Vec::new();
    let mut path_variables = Vec::new();
    for parameter in operation["parameters"].as_array().into_iter().flatten() {
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = example(doc, &parameter["schema"], 0);
        let value = match value {
            Value::String(text) => text,
            Value::Null => String::new(),
            other => other.to_string(),
        };
        let mut entry = json!({ "key": name, "value": value });
        if let Some(description) = parameter["description"].as_str() {
            entry["description"] = json!(description);
        }
        let required = parameter["required"].as_bool().unwrap_or(false);
        match parameter["in"].as_str() {
            Some("query") => {
                entry["disabled"] = json!(!required);
                query.push(entry);
            }
            Some("header") => {
                entry["disabled"] = json!(true);
                headers.push(entry);
            }
            Some("path") => path_variables.push(entry),
            _ => {}
        }
    }
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => segment.to_string(),
            },
        )
        .collect();
    let enabled_query: Vec<String> = query
        .iter()
        .filter(|entry| entry["disabled"] == json!(false))
        .map(|entry| {
            format!(
                "{}={}",
                entry["key"].as_str().unwrap_or_default(),
                entry["value"].as_str().unwrap_or_default()
            )
        })
        .collect();
    let mut raw = format!("{{{{{url_variable}}}}}/{}", segments.join("/"));
    if !enabled_query.is_empty() {
        raw = format!("{raw}?{}", enabled_query.join("&"));
    }
    let mut url = json!({ "raw": raw, "host": [format!("{{{{{url_variable}}}}}")], "path": segments });
    if !query.is_empty() {
        url["query"] = json!(query);
    }
    if !path_variables.is_empty() {
        url["variable"] = json!(path_variables);
    }
    let mut request = json!({
        "method": method.to_uppercase(),
        "header": headers,
        "url": url,
    });
    if let Some(description) = operation_description(operation) {
        request["description"] = json!(description);
    }
    match security_of(doc, operation) {
        Security::Bearer => {}
        Security::None => request["auth"] = json!({ "type": "noauth" }),
        Security::Capability => {
            request["auth"] = json!({ "type": "noauth" });
            request["header"].as_array_mut().expect("headers are a list").insert(
                0,
                json!({ "key": dfs_proto::CAPABILITY_HEADER, "value": "{{capability}}" }),
            );
        }
    }
    if let Some(body) = request_body(doc, &operation["requestBody"]) {
        request["body"] = body;
    }
    let name = operation["summary"].as_str().unwrap_or(path);
    let mut item = json!({ "name": format!("{} {path}: {name}", method.to_uppercase()), "request": request });
    if path == "/v1/auth/login" {
        item["event"] = json!([{
            "listen": "test",
            "script": { "type": "text/javascript", "exec": [
                "if (pm.response.code === 200) { pm.collectionVariables.set('ticket', pm.response.json().ticket); }"
            ] },
        }]);
    }
    item
}

fn operation_description(operation: &Value) -> Option<String> {
    let summary = operation["summary"].as_str();
    let description = operation["description"].as_str();
    match (summary, description) {
        (Some(summary), Some(description)) => Some(format!("{summary}\n\n{description}")),
        (Some(text), None) | (None, Some(text)) => Some(text.to_string()),
        (None, None) => None,
    }
}

enum Security {
    Bearer,
    Capability,
    None,
}

/// How an operation authenticates: its own `security`, else the document's.
fn security_of(doc: &Value, operation: &Value) -> Security {
    let requirements = operation.get("security").unwrap_or(&doc["security"]);
    let schemes: Vec<&String> = requirements
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .flat_map(Map::keys)
        .collect();
    if schemes.iter().any(|scheme| *scheme == dfs_service::openapi::CAPABILITY) {
        Security::Capability
    } else if schemes.iter().any(|scheme| *scheme == dfs_service::openapi::BEARER) {
        Security::Bearer
    } else {
        Security::None
    }
}

/// The body of a request: an example JSON document, or a file.
fn request_body(doc: &Value, body: &Value) -> Option<Value> {
    let content = body["content"].as_object()?;
    if let Some(json_body) = content.get("application/json") {
        let example = example(doc, &json_body["schema"], 0);
        return Some(json!({
            "mode": "raw",
            "raw": serde_json::to_string_pretty(&example).expect("JSON"),
            "options": { "raw": { "language": "json" } },
        }));
    }
    content
        .contains_key("application/octet-stream")
        .then(|| json!({ "mode": "file", "file": {} }))
}

/// An example value of `schema`: its own example, else one made from its type.
fn example(doc: &Value, schema: &Value, depth: usize) -> Value {
    if depth > 8 {
        return Value::Null;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap_or_default();
        return example(doc, &doc["components"]["schemas"][name], depth + 1);
    }
    if let Some(first) = schema["examples"].as_array().and_then(|examples| examples.first()) {
        return first.clone();
    }
    if let Some(value) = schema.get("example") {
        return value.clone();
    }
    if let Some(first) = schema["enum"].as_array().and_then(|values| values.first()) {
        return first.clone();
    }
    for combinator in ["allOf", "oneOf", "anyOf"] {
        if let Some(options) = schema[combinator].as_array() {
            let mut merged = Map::new();
            for option in options {
                match example(doc, option, depth + 1) {
                    Value::Object(fields) => merged.extend(fields),
                    Value::Null => {}
                    other if combinator != "allOf" => return other,
                    _ => {}
                }
            }
            return Value::Object(merged);
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(several) => several.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let kind = types.iter().find(|kind| **kind != "null").copied();
    match kind {
        Some("object") => {
            let mut fields = Map::new();
            for (name, property) in schema["properties"].as_object().into_iter().flatten() {
                fields.insert(name.clone(), example(doc, property, depth + 1));
            }
            Value::Object(fields)
        }
        Some("array") => json!([example(doc, &schema["items"], depth + 1)]),
        Some("integer") => json!(schema["minimum"].as_u64().unwrap_or(0)),
        Some("number") => json!(0),
        Some("boolean") => json!(false),
        Some("string") => json!(""),
        _ => Value::Null,
    }
}
