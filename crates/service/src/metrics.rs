//! Prometheus text metrics at `GET /metrics` (no auth), for every service.
//!
//! [`finish_router_with`](crate::finish_router_with) counts every request by
//! method, route template (`/v1/uploads/{id}/chunks`, never the raw path) and
//! status class, with the total time taken and a latency histogram
//! (`dfs_http_request_duration_seconds`, buckets [`LATENCY_BUCKETS`]); a
//! service adds its own gauges and counters with [`Metrics::register`], read
//! at each scrape. The text exposition format is written by hand: no metrics
//! library is needed.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

type Source = Box<dyn Fn(&mut Exposition) + Send + Sync>;
/// Method, route template and status class of a request.
type RequestKey = (String, String, &'static str);

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` follows.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The requests of one (method, route, status class).
#[derive(Debug, Default, Clone)]
struct RequestStats {
    count: u64,
    seconds: f64,
    /// Requests per bucket of [`LATENCY_BUCKETS`] (not cumulative; the last
    /// slot holds those above every bound).
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
}

/// Request counters of one service plus the sources of its own metrics.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, RequestStats>>,
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
        entry.count += 1;
        entry.seconds += seconds;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        entry.buckets[bucket] += 1;
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
            for ((method, route, class), RequestStats { count, .. }) in requests.iter() {
                let _ = writeln!(
                    out.text,
                    "dfs_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {count}"
                );
            }
            out.text.push_str(
                "# HELP dfs_http_request_seconds_total Time spent answering HTTP requests (until the response head).\n",
            );
            out.text.push_str("# TYPE dfs_http_request_seconds_total counter\n");
            for ((method, route, class), RequestStats { seconds, .. }) in requests.iter() {
                let _ = writeln!(
                    out.text,
                    "dfs_http_request_seconds_total{{method=\"{method}\",route=\"{route}\",status=\"{class}\"}} {seconds}"
                );
            }
            out.text.push_str(
                "# HELP dfs_http_request_duration_seconds Time to answer HTTP requests (until the response head).\n",
            );
            out.text
                .push_str("# TYPE dfs_http_request_duration_seconds histogram\n");
            for ((method, route, class), stats) in requests.iter() {
                let labels = format!("method=\"{method}\",route=\"{route}\",status=\"{class}\"");
                let mut cumulative = 0;
                for (bound, in_bucket) in LATENCY_BUCKETS.iter().zip(stats.buckets) {
                    cumulative += in_bucket;
                    let _ = writeln!(
                        out.text,
                        "dfs_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                    );
                }
                let _ = writeln!(
                    out.text,
                    "dfs_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                    stats.count
                );
                let _ = writeln!(
                    out.text,
                    "dfs_http_request_duration_seconds_sum{{{labels}}} {}",
                    stats.seconds
                );
                let _ = writeln!(
                    out.text,
                    "dfs_http_request_duration_seconds_count{{{labels}}} {}",
                    stats.count
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
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// The samples of one histogram series: (le, cumulative count), then sum and count.
    fn histogram(text: &str, labels: &str) -> (Vec<(String, u64)>, f64, u64) {
        let bucket_prefix = format!("dfs_http_request_duration_seconds_bucket{{{labels},le=\"");
        let buckets = text
            .lines()
            .filter_map(|line| line.strip_prefix(&bucket_prefix))
            .map(|rest| {
                let (le, value) = rest.split_once("\"} ").expect("a bucket sample");
                (le.to_string(), value.parse().expect("a count"))
            })
            .collect();
        let value = |name: &str| {
            let prefix = format!("dfs_http_request_duration_seconds_{name}{{{labels}}} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no {name} for {labels} in\n{text}"))
                .to_string()
        };
        (buckets, value("sum").parse().unwrap(), value("count").parse().unwrap())
    }

    #[test]
    fn latency_histogram_is_cumulative_and_ends_in_the_count() {
        let metrics = Metrics::new();
        for seconds in [0.0005, 0.001, 0.003, 0.2, 0.2, 7.0, 60.0] {
            metrics.record("PUT", "/v1/chunks/{id}", 201, seconds);
        }
        metrics.record("GET", "/healthz", 200, 0.0001);
        let text = metrics.render();
        assert!(text.contains("# TYPE dfs_http_request_duration_seconds histogram\n"));
        let (buckets, sum, count) = histogram(&text, "method=\"PUT\",route=\"/v1/chunks/{id}\",status=\"2xx\"");
        let expected = [
            ("0.001", 2),
            ("0.0025", 2),
            ("0.005", 3),
            ("0.01", 3),
            ("0.025", 3),
            ("0.05", 3),
            ("0.1", 3),
            ("0.25", 5),
            ("0.5", 5),
            ("1", 5),
            ("2.5", 5),
            ("5", 5),
            ("10", 6),
            ("30", 6),
            ("+Inf", 7),
        ];
        let expected: Vec<(String, u64)> = expected.iter().map(|(le, n)| (le.to_string(), *n)).collect();
        assert_eq!(buckets, expected);
        assert!(buckets.windows(2).all(|pair| pair[0].1 <= pair[1].1), "cumulative");
        assert_eq!(count, 7);
        assert_eq!(buckets.last().unwrap().1, count, "+Inf equals the count");
        assert!((sum - 67.4045).abs() < 1e-9, "sum {sum}");
        let (healthz, _, healthz_count) = histogram(&text, "method=\"GET\",route=\"/healthz\",status=\"2xx\"");
        assert_eq!(healthz_count, 1);
        assert!(healthz.iter().all(|(_, n)| *n == 1));
    }
}
