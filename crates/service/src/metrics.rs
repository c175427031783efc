//! Prometheus text metrics at `GET /metrics` (no auth), for every service.
//!
//! [`finish_router_with`](crate::finish_router_with) counts every request by
//! method, route template (`/v1/uploads/{id}/chunks`, never the raw path) and
//! status class, with the total time taken; a service adds its own gauges and
//! counters with [`Metrics::register`], read at each scrape. The text
//! exposition format is written by hand: no metrics library is needed.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

type Source = Box<dyn Fn(&mut Exposition) + Send + Sync>;
/// Method, route template and status class of a request.
type RequestKey = (String, String, &'static str);

/// Request counters of one service plus the sources of its own metrics.
#[derive(Default)]
pub struct Metrics {
    /// (method, route, status class) -> (count, seconds).
    requests: Mutex<BTreeMap<RequestKey, (u64, f64)>>,
    sources: Mutex<Vec<Source>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The text being written for one scrape.
#[derive(Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A value that goes up and down (`dfs_` is prefixed to `name`).
    pub fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.sample(name, help, "gauge", value);
    }

    /// A value that only goes up (`dfs_` is prefixed to `name`, which should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, value: f64) {
        self.sample(name, help, "counter", value);
    }

    fn sample(&mut self, name: &str, help: &str, kind: &str, value: f64) {
        let _ = writeln!(self.text, "# HELP dfs_{name} {help}");
        let _ = writeln!(self.text, "# TYPE dfs_{name} {kind}");
        let _ = writeln!(self.text, "dfs_{name} {value}");
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::new(Metrics::default())
    }

    /// Adds metrics written by `source` at every scrape.
    pub fn register(&self, source: impl Fn(&mut Exposition) + Send + Sync + 'static) {
        lock(&self.sources).push(Box::new(source));
    }

    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let mut requests = lock(&self.requests);
        let entry = requests
            .entry((method.to_string(), route.to_string(), class))
            .or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    /// Everything, in the Prometheus text format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        {
            let requests = lock(&self.requests);
            out.text.push_str(
                "# HELP dfs_http_requests_total HTTP requests answered, by route template and status class.\n",
            );
            out.text.push_str("# TYPE dfs_http_requests_total counter\n");
            for ((method, route, class), (count, _)) in requests.iter() {
                let _ = writeln!(
                    out.text,
                    "dfs_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {count}"
                );
            }
            out.text.push_str(
                "# HELP dfs_http_request_seconds_total Time spent answering HTTP requests (until the response head).\n",
            );
            out.text.push_str("# TYPE dfs_http_request_seconds_total counter\n");
            for ((method, route, class), (_, seconds)) in requests.iter() {
                let _ = writeln!(
                    out.text,
                    "dfs_http_request_seconds_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {seconds}"
                );
            }
        }
        for source in lock(&self.sources).iter() {
            source(&mut out);
        }
        out.text
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The middleware: times and counts every request by its route template.
pub(crate) async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    // Unknown paths share one label, so a scan cannot blow up the series count.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics.record(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_registered_metrics() {
        let metrics = Metrics::new();
        metrics.record("GET", "/v1/chunks/{id}", 200, 0.5);
        metrics.record("GET", "/v1/chunks/{id}", 204, 0.25);
        metrics.record("PUT", "/v1/chunks/{id}", 503, 1.0);
        metrics.register(|out| out.gauge("chunks", "Chunks stored.", 7.0));
        let text = metrics.render();
        assert!(text.contains("dfs_http_requests_total{method=\"GET\",route=\"/v1/chunks/{id}\",status=\"2xx\"} 2\n"));
        assert!(text.contains(
            "dfs_http_request_seconds_total{method=\"GET\",route=\"/v1/chunks/{id}\",status=\"2xx\"} 0.75\n"
        ));
        assert!(text.contains("status=\"5xx\"} 1\n"));
        assert!(text.contains("# TYPE dfs_chunks gauge\ndfs_chunks 7\n"));
    }
}
