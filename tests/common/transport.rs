//! The transport matrix (in the spirit of htsget-rs's `TestServer` trait): one
//! [`TestTransport`] trait, implemented by the real server (hyper on an ephemeral port), the
//! service called in-process, and the Lambda handler fed function-URL, API Gateway HTTP API
//! (payload 2.0, named stage) and REST API (payload 1.0) events. Tests run the same cases
//! through every [`Via`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use cellucid_edge::lambda::LambdaHandler;
use cellucid_edge::service::{Config, Service};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use serde_json::{Value, json};

use super::{ORIGIN, Resp, TestServer};

/// How a test reaches the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `cellucid-edge serve`'s hyper transport on 127.0.0.1:0.
    Serve,
    /// `Service::handle` called directly.
    InProcess,
    /// The Lambda handler with function URL events.
    LambdaUrl,
    /// The Lambda handler with API Gateway HTTP API events (payload 2.0, stage `prod`).
    LambdaHttpApi,
    /// The Lambda handler with API Gateway REST API events (payload 1.0, stage `prod`).
    LambdaRest,
}

/// Every transport.
pub const ALL: [Via; 5] = [
    Via::Serve,
    Via::InProcess,
    Via::LambdaUrl,
    Via::LambdaHttpApi,
    Via::LambdaRest,
];

impl Via {
    /// Whether this is the Lambda handler.
    pub fn is_lambda(self) -> bool {
        matches!(self, Via::LambdaUrl | Via::LambdaHttpApi | Via::LambdaRest)
    }
}

/// One way to send requests to a service.
#[async_trait]
pub trait TestTransport: Send + Sync {
    /// A name for messages.
    fn name(&self) -> String;

    /// Any method on `raw_path` (already percent-encoded, starting with `/`, optionally with a
    /// query) with `headers`; transport errors (a body cut short, a closed connection) are
    /// `Err`.
    async fn try_request(
        &self,
        method: Method,
        raw_path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String>;

    /// Like [`try_request`](Self::try_request), panicking on transport errors.
    async fn request(&self, method: Method, raw_path: &str, headers: &[(&str, &str)]) -> Resp {
        let name = self.name();
        self.try_request(method.clone(), raw_path, headers)
            .await
            .unwrap_or_else(|e| panic!("{name}: {method} {raw_path}: {e}"))
    }

    /// `GET`.
    async fn get(&self, raw_path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(Method::GET, raw_path, headers).await
    }

    /// `GET` with `Accept-Encoding: gzip` and `Origin: https://www.cellucid.com`, like compare.py.
    async fn get_viewer(&self, raw_path: &str) -> Resp {
        self.get(raw_path, &[("accept-encoding", "gzip"), ("origin", ORIGIN)])
            .await
    }
}

#[async_trait]
impl TestTransport for TestServer {
    fn name(&self) -> String {
        "serve".into()
    }

    async fn try_request(
        &self,
        method: Method,
        raw_path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        TestServer::try_request(self, method, raw_path, headers).await
    }
}

/// The service called in-process.
pub struct InProcess(pub Arc<Service>);

#[async_trait]
impl TestTransport for InProcess {
    fn name(&self) -> String {
        "in-process".into()
    }

    async fn try_request(
        &self,
        method: Method,
        raw_path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut b = Request::builder().method(method).uri(raw_path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let request = b.body(()).map_err(|e| format!("building request: {e}"))?;
        let response = self.0.handle(request).await;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| format!("body: {e}"))?;
        Ok(Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Lambda event formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventFormat {
    /// Function URL (payload 2.0, `$default` stage).
    FunctionUrl,
    /// API Gateway HTTP API (payload 2.0) on stage `prod`.
    HttpApi,
    /// API Gateway REST API (payload 1.0) on stage `prod`.
    Rest,
}

const URL_HOST: &str = "abcdefghijklmnopqrstuvwxyz234567.lambda-url.us-east-1.on.aws";
const API_HOST: &str = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com";

/// The Lambda handler fed events of one format.
pub struct Lambda {
    /// The handler.
    pub handler: LambdaHandler,
    /// The event format.
    pub format: EventFormat,
    /// When set, each invocation's deadline is this far in the future (else none is given).
    pub invocation_time: Option<Duration>,
}

impl Lambda {
    /// The event of one request.
    pub fn event(&self, method: &Method, raw_path: &str, headers: &[(&str, &str)]) -> Value {
        let (path, query) = raw_path.split_once('?').unwrap_or((raw_path, ""));
        let host = match self.format {
            EventFormat::FunctionUrl => URL_HOST,
            _ => API_HOST,
        };
        let mut map: BTreeMap<String, String> = BTreeMap::new();
        map.insert("host".into(), host.into());
        map.insert("x-forwarded-proto".into(), "https".into());
        map.insert("x-forwarded-port".into(), "443".into());
        for (k, v) in headers {
            let key = k.to_ascii_lowercase();
            match map.get_mut(&key) {
                Some(existing) if key != "host" => {
                    existing.push_str(", ");
                    existing.push_str(v);
                }
                _ => {
                    map.insert(key, v.to_string());
                }
            }
        }
        let headers = json!(map);
        match self.format {
            EventFormat::FunctionUrl | EventFormat::HttpApi => {
                let (stage, raw) = match self.format {
                    EventFormat::FunctionUrl => ("$default", path.to_string()),
                    _ => ("prod", format!("/prod{path}")),
                };
                json!({
                    "version": "2.0",
                    "routeKey": "$default",
                    "rawPath": raw,
                    "rawQueryString": query,
                    "headers": headers,
                    "requestContext": {
                        "accountId": "123456789012",
                        "apiId": "a1b2c3d4e5",
                        "domainName": host,
                        "domainPrefix": "a1b2c3d4e5",
                        "http": {
                            "method": method.as_str(),
                            "path": raw,
                            "protocol": "HTTP/1.1",
                            "sourceIp": "198.51.100.7",
                            "userAgent": "test"
                        },
                        "requestId": "matrix",
                        "routeKey": "$default",
                        "stage": stage,
                        "time": "01/Nov/2026:12:00:00 +0000",
                        "timeEpoch": 1793534400000u64
                    },
                    "isBase64Encoded": false
                })
            }
            EventFormat::Rest => {
                let multi: BTreeMap<&String, Vec<&String>> =
                    map.iter().map(|(k, v)| (k, vec![v])).collect();
                let query_map: BTreeMap<String, String> =
                    url::form_urlencoded::parse(query.as_bytes())
                        .into_owned()
                        .collect();
                let query_value = if query_map.is_empty() {
                    Value::Null
                } else {
                    json!(query_map)
                };
                let multi_query = if query_map.is_empty() {
                    Value::Null
                } else {
                    json!(
                        query_map
                            .iter()
                            .map(|(k, v)| (k.clone(), vec![v.clone()]))
                            .collect::<BTreeMap<_, _>>()
                    )
                };
                json!({
                    "resource": "/{proxy+}",
                    "path": path,
                    "httpMethod": method.as_str(),
                    "headers": headers,
                    "multiValueHeaders": multi,
                    "queryStringParameters": query_value,
                    "multiValueQueryStringParameters": multi_query,
                    "pathParameters": { "proxy": path.trim_start_matches('/') },
                    "stageVariables": null,
                    "requestContext": {
                        "accountId": "123456789012",
                        "apiId": "a1b2c3d4e5",
                        "domainName": host,
                        "domainPrefix": "a1b2c3d4e5",
                        "httpMethod": method.as_str(),
                        "identity": { "sourceIp": "198.51.100.7", "userAgent": "test" },
                        "path": format!("/prod{path}"),
                        "protocol": "HTTP/1.1",
                        "requestId": "matrix",
                        "requestTime": "01/Nov/2026:12:00:00 +0000",
                        "requestTimeEpoch": 1793534400000u64,
                        "resourceId": "abc123",
                        "resourcePath": "/{proxy+}",
                        "stage": "prod"
                    },
                    "body": null,
                    "isBase64Encoded": false
                })
            }
        }
    }
}

/// A response envelope as a [`Resp`] (base64 bodies decoded, multi-value headers joined).
pub fn envelope_response(envelope: &Value) -> Result<Resp, String> {
    let mut headers = HeaderMap::new();
    let mut add = |k: &str, v: &str| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(name, value);
        }
    };
    if let Some(map) = envelope["headers"].as_object() {
        for (k, v) in map {
            add(k, v.as_str().unwrap_or_default());
        }
    }
    if let Some(map) = envelope["multiValueHeaders"].as_object() {
        for (k, values) in map {
            for v in values.as_array().into_iter().flatten() {
                add(k, v.as_str().unwrap_or_default());
            }
        }
    }
    let base64 = envelope["isBase64Encoded"].as_bool().unwrap_or(false);
    let body = match envelope["body"].as_str() {
        None => Bytes::new(),
        Some(s) if base64 => {
            Bytes::from(BASE64.decode(s).map_err(|e| format!("base64 body: {e}"))?)
        }
        Some(s) => Bytes::from(s.as_bytes().to_vec()),
    };
    let status = envelope["statusCode"]
        .as_u64()
        .and_then(|s| StatusCode::from_u16(s as u16).ok())
        .ok_or_else(|| format!("no statusCode in {envelope}"))?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

#[async_trait]
impl TestTransport for Lambda {
    fn name(&self) -> String {
        format!("lambda {:?}", self.format)
    }

    async fn try_request(
        &self,
        method: Method,
        raw_path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let event = self.event(&method, raw_path, headers);
        let envelope = match self.invocation_time {
            Some(left) => {
                self.handler
                    .handle_event_by(event, SystemTime::now() + left)
                    .await
            }
            None => self.handler.handle_event(event).await,
        }
        .map_err(|e| format!("event not handled: {e}"))?;
        envelope_response(&envelope)
    }
}

/// Reach `service` via `via`; `config` holds the Lambda's transport settings.
pub async fn connect(via: Via, service: Arc<Service>, config: &Config) -> Box<dyn TestTransport> {
    connect_with(via, service, config, None).await
}

/// Like [`connect`], the Lambda's invocations having `invocation_time` before their deadline.
pub async fn connect_with(
    via: Via,
    service: Arc<Service>,
    config: &Config,
    invocation_time: Option<Duration>,
) -> Box<dyn TestTransport> {
    let lambda = |format| {
        Box::new(Lambda {
            handler: LambdaHandler::with_service(config.clone(), service.clone()),
            format,
            invocation_time,
        }) as Box<dyn TestTransport>
    };
    match via {
        Via::Serve => Box::new(TestServer::start_shared(service.clone()).await),
        Via::InProcess => Box::new(InProcess(service.clone())),
        Via::LambdaUrl => lambda(EventFormat::FunctionUrl),
        Via::LambdaHttpApi => lambda(EventFormat::HttpApi),
        Via::LambdaRest => lambda(EventFormat::Rest),
    }
}
