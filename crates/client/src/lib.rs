//! The DFS client library. The `dfs` command is a thin layer over it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dfs_client::Error> {
//! use dfs_client::Client;
//! let mut client = Client::new("http://127.0.0.1:7070")?;
//! let login = client.login("ann", "a good password").await?;
//! client.set_ticket(Some(login.ticket));
//! let path = "/home/ann/hello.txt".parse().unwrap();
//! client.put(&path, &b"hello"[..], &Default::default()).await?;
//! let mut out = Vec::new();
//! client.get(&path, &mut out, &Default::default()).await?;
//! assert_eq!(out, b"hello");
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`Client`]: connection to a cluster, given the directory service's URL;
//!   namespace and user calls are methods on it.
//! - [`transfer`]: `put` and `get`: chunking, hashing, placement, parallel
//!   chunk transfers, replica fallback; `inline.rs`: small files written and
//!   read in one request to the directory service, stored in the metadata.
//! - [`Error`]: one error type whose `Display` is a single line for a human.
//! - [`locks`]: locks ([`Client::lock_guard`] renews in the background) and
//!   transactions ([`Client::transaction`]); [`Client::with_lock_token`] and
//!   [`Client::in_transaction`] give clients whose writes carry a token or are staged.
//! - [`cache`]: the local disk cache of chunks ([`Client::with_cache`]), used
//!   by `get` and filled by `get` and `put`.
//! - [`watch`]: change events from the directory service, and the metadata
//!   cache they invalidate ([`Client::watch_metadata`], [`Client::stat_cached`]).
//! - [`retry`]: riding through restarts: every call tries again, with
//!   backoff, for [`ClientOptions::retry_for`] (30 s by default), and says
//!   once that it is waiting ([`ClientOptions::wait_notice`]).
//!
//! Architecture invariant: this crate depends on `dfs-proto` only, never on a
//! service crate; everything it knows of the servers is their HTTP API.

pub mod cache;
mod error;
mod inline;
pub mod locks;
pub mod retry;
pub mod transfer;
pub mod watch;

pub use cache::{Cache, CacheStats};
pub use error::Error;
pub use locks::{LockGuard, WriteScope};
pub use retry::{WaitNotice, DEFAULT_RETRY_FOR};
pub use transfer::{GetOptions, GetSummary, Progress, PutOptions, PutSummary};

use dfs_proto::auth::{
    AccessKeyInfo, ChangePasswordRequest, ClusterInfo, CreateAccessKeyRequest, CreateUserRequest, CreatedAccessKey,
    KeySession, LoginRequest, LoginResponse, SessionsEnded, UserInfo, WhoAmI,
};
use dfs_proto::namespace::{
    ChmodRequest, ChownRequest, ClusterStatus, ComposeFiles, FileLayout, LinkRequest, Listing, LocalOwner,
    LocalOwnerRequest, MkdirRequest, RemoveRequest, RenameRequest, SetTimesRequest, Stat, LAYOUT_PAGE_MAX,
};
use dfs_proto::{DfsPath, ErrorBody, ErrorCode};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::OnceLock;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which service a request went to, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Directory,
    Security,
    FileServer,
}

impl Service {
    fn describe(self) -> &'static str {
        match self {
            Service::Directory => "directory service",
            Service::Security => "security service",
            Service::FileServer => "file server",
        }
    }
}

/// Chunks a `put` or `get` of one file keeps in flight: the client holds at
/// most this many chunks (8 MiB each by default) in memory, whatever the
/// file size. 8, measured (1 GiB put of new data, replication 1, one
/// machine): 2 in flight 1.54 s, 4 1.27 s, 6 1.14 s, 8 1.06 s; gets were
/// the same from 2 to 8 (0.49-0.53 s from the servers' page cache). A chunk
/// in flight waits mostly for its fsync on the file server, so more of them
/// keep the disk busy.
pub const DEFAULT_PARALLELISM: usize = 8;

/// A connection to one cluster. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Every directory service of the cluster (several may share one
    /// namespace); requests go to `directories[current]`, and move on to
    /// the next when it cannot be reached.
    directories: std::sync::Arc<Vec<String>>,
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ticket: Option<String>,
    info: std::sync::Arc<OnceLock<ClusterInfo>>,
    /// Chunks transferred at once by `put` and `get` ([`DEFAULT_PARALLELISM`]).
    pub parallelism: usize,
    /// Lock token and transaction sent with directory service requests.
    scope: WriteScope,
    /// The disk cache of chunks, if any.
    cache: Option<std::sync::Arc<Cache>>,
    /// Stats kept valid by a watch (see [`watch`]).
    metadata: std::sync::Arc<watch::MetadataCache>,
    /// How long calls keep trying through failures (see [`retry`]).
    retry: std::sync::Arc<retry::RetryPolicy>,
    /// Directory service changes answered once committed, before they are
    /// on stable storage ([`Client::with_deferred_durability`]).
    deferred: bool,
    /// File servers on this machine that hand chunk files over.
    local_reads: std::sync::Arc<transfer::LocalReads>,
}

/// How a [`Client`] connects, beyond the URL.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM CA certificates to trust besides the web roots (a private
    /// cluster CA, such as the one `dfs up --tls` makes).
    pub ca_certificates_pem: Option<Vec<u8>>,
    /// Sent as `x-request-id` on every request of this client, so that its
    /// calls can be followed through the logs of every service (default: a
    /// fresh random id per client).
    pub request_id: Option<String>,
    /// How long a call keeps trying after its first failure, while a
    /// service cannot be reached or answers `503` (see [`retry`]); `None`
    /// is [`DEFAULT_RETRY_FOR`], zero fails at once.
    pub retry_for: Option<Duration>,
    /// Told once, the first time a call of this client has to wait.
    pub wait_notice: Option<WaitNotice>,
    /// Reads every chunk over HTTP, even from file servers on this
    /// machine that would hand the chunk's file over (see `transfer/local.rs`).
    pub no_local_reads: bool,
}

/// The directory service URLs in `list` (comma-separated), without trailing slashes.
fn parse_directory_urls(list: &str) -> Result<Vec<String>> {
    let urls: Vec<String> = list
        .split(',')
        .map(|url| url.trim().trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .collect();
    if urls.is_empty() {
        return Err(Error::Protocol(format!("no directory service URL in {list:?}")));
    }
    Ok(urls)
}

/// 16 hex digits, random enough to tell the requests of one client from another's.
fn new_request_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

impl Client {
    /// A client of the cluster whose directory service is at `directory_url`
    /// (or several, comma-separated, when directory services share one
    /// database: the client fails over to the next when one is unreachable).
    pub fn new(directory_url: &str) -> Result<Self> {
        Self::with_options(directory_url, &ClientOptions::default())
    }

    /// [`Client::new`] with a CA to trust and a request id.
    pub fn with_options(directory_url: &str, options: &ClientOptions) -> Result<Self> {
        let request_id = options.request_id.clone().unwrap_or_else(new_request_id);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "x-request-id",
            reqwest::header::HeaderValue::from_str(&request_id)
                .map_err(|_| Error::Protocol(format!("bad request id {request_id:?}")))?,
        );
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // Below the services' 20 s header read timeout (which closes idle
            // connections), so a pooled connection is never reused as it closes.
            .pool_idle_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .default_headers(headers);
        if let Some(pem) = &options.ca_certificates_pem {
            let certificates = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| Error::Protocol(format!("reading the CA certificates: {error}")))?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|error| Error::Protocol(format!("building an HTTP client: {error}")))?;
        Self::with_http(directory_url, http, options)
    }

    /// A client over a ready HTTP client, for a service that acts as a
    /// client (the directory service streaming a large `PUT /v1/files` into
    /// chunks): `http` carries the service's trusted CAs and request id, so
    /// `options.ca_certificates_pem` and `options.request_id` are not used.
    pub fn with_http(directory_url: &str, http: reqwest::Client, options: &ClientOptions) -> Result<Self> {
        Ok(Client {
            http,
            directories: std::sync::Arc::new(parse_directory_urls(directory_url)?),
            current: Default::default(),
            ticket: None,
            info: Default::default(),
            parallelism: DEFAULT_PARALLELISM,
            scope: WriteScope::default(),
            cache: None,
            metadata: Default::default(),
            retry: std::sync::Arc::new(retry::RetryPolicy::new(
                options.retry_for.unwrap_or(DEFAULT_RETRY_FOR),
                options.wait_notice.clone(),
            )),
            deferred: false,
            local_reads: std::sync::Arc::new(transfer::LocalReads::new(!options.no_local_reads)),
        })
    }

    /// This client's changes to the namespace are answered once committed:
    /// visible to everyone and safe from the death of any process, but on
    /// stable storage only a moment later, or at [`Client::sync`] (the
    /// `x-dfs-durability: deferred` header; a local file system's contract
    /// for `mkdir` and `close`, which the mount keeps). Chunks are always
    /// durable before the commit that names them.
    pub fn with_deferred_durability(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// The durability barrier: returns once every change committed before
    /// the call, by anyone, is on stable storage.
    pub async fn sync(&self) -> Result<()> {
        self.change(
            || self.directory_no_content::<()>(Method::POST, "/v1/sync", None),
            |error| async move { Err(error) },
        )
        .await
    }

    /// How long a call keeps trying after its first failure.
    pub fn retry_for(&self) -> Duration {
        self.retry.retry_for
    }

    /// Uses `cache` for chunks: `get` takes every chunk whose hash it holds
    /// from it, and `get` and `put` fill it.
    pub fn with_cache(mut self, cache: std::sync::Arc<Cache>) -> Self {
        self.cache = Some(cache);
        self
    }

    pub fn cache(&self) -> Option<&std::sync::Arc<Cache>> {
        self.cache.as_ref()
    }

    /// The directory service requests go to now.
    pub fn directory_url(&self) -> &str {
        &self.directories[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.directories.len()]
    }

    /// Every directory service URL, comma-separated: what identifies the cluster.
    pub fn cluster_url(&self) -> String {
        self.directories.join(",")
    }

    /// Sets the ticket sent as `Authorization: Bearer` on every call.
    pub fn set_ticket(&mut self, ticket: Option<String>) {
        self.ticket = ticket;
    }

    pub fn ticket(&self) -> Option<&str> {
        self.ticket.as_deref()
    }

    /// Where the rest of the cluster is (asked once, then remembered).
    pub async fn info(&self) -> Result<ClusterInfo> {
        if let Some(info) = self.info.get() {
            return Ok(info.clone());
        }
        let info: ClusterInfo = self.directory::<(), _>(Method::GET, "/v1/info", None).await?;
        let _ = self.info.set(info.clone());
        Ok(info)
    }

    async fn auth_url(&self) -> Result<String> {
        Ok(self.info().await?.auth_url.trim_end_matches('/').to_string())
    }

    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let to_directory = self.directories.iter().any(|directory| {
            url.strip_prefix(directory.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        });
        let mut builder = self.scope.apply(self.http.request(method, url), to_directory);
        if self.deferred && to_directory {
            builder = builder.header(dfs_proto::namespace::DURABILITY_HEADER, "deferred");
        }
        match &self.ticket {
            Some(ticket) => builder.bearer_auth(ticket),
            None => builder,
        }
    }

    /// Sends a request and turns every failure into an [`Error`].
    async fn send(&self, service: Service, builder: RequestBuilder, url: &str) -> Result<Response> {
        Self::check(service, Self::dispatch(service, builder, url).await?).await
    }

    /// [`Client::send`] for a request that asked for an upgrade: a `101
    /// Switching Protocols` answer is returned as it is, too.
    async fn send_upgrading(&self, service: Service, builder: RequestBuilder, url: &str) -> Result<Response> {
        let response = Self::dispatch(service, builder, url).await?;
        if response.status() == reqwest::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(response);
        }
        Self::check(service, response).await
    }

    /// The answer to a request, whatever its status; unreachable if none came.
    async fn dispatch(service: Service, builder: RequestBuilder, url: &str) -> Result<Response> {
        builder
            .send()
            .await
            .map_err(|error| Error::unreachable(service, url, error))
    }

    /// An answer turned into an [`Error`] unless it is a success.
    async fn check(service: Service, response: Response) -> Result<Response> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ErrorBody>(&text).unwrap_or_else(|_| {
            ErrorBody::new(
                dfs_proto::ErrorCode::Internal,
                format!("{} answered HTTP {status}: {}", service.describe(), text.trim()),
            )
        });
        Err(Error::Api { status, body })
    }

    async fn directory<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&B>,
    ) -> Result<T> {
        self.directory_send(method, endpoint, body)
            .await?
            .json()
            .await
            .map_err(|error| Error::Protocol(format!("reading the answer of {endpoint}: {error}")))
    }

    /// Sends a directory service request, failing over to the next directory
    /// service when this one cannot be reached, and trying again (see
    /// [`retry`]) while none can be or they answer `503`, for up to
    /// [`Client::retry_for`]. A request whose answer was lost is sent again
    /// only if that is harmless ([`retry::resend_after_lost_answer`]);
    /// otherwise the error goes to the caller (see [`Client::change`]).
    pub(crate) async fn directory_send<B: Serialize>(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&B>,
    ) -> Result<Response> {
        self.directory_with(method, endpoint, |builder| match body {
            Some(body) => builder.json(body),
            None => builder,
        })
        .await
    }

    /// [`Client::directory_send`] with any body: `attach` adds it (and its
    /// headers) to each attempt.
    pub(crate) async fn directory_with(
        &self,
        method: Method,
        endpoint: &str,
        attach: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response> {
        self.directory_retrying(method, endpoint, attach, true).await
    }

    /// [`Client::directory_with`]; a `503` answer is tried again only if
    /// `wait_when_unavailable` (a caller that can do better than waiting,
    /// such as a placement that excluded servers, says no).
    pub(crate) async fn directory_retrying(
        &self,
        method: Method,
        endpoint: &str,
        attach: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
        wait_when_unavailable: bool,
    ) -> Result<Response> {
        use std::sync::atomic::Ordering;
        let count = self.directories.len();
        let resend = retry::resend_after_lost_answer(&method, endpoint);
        let mut attempts = self.retry.attempts();
        // Directory services that failed since the last wait.
        let mut failed_in_turn = 0;
        loop {
            let index = self.current.load(Ordering::Relaxed) % count;
            let url = format!("{}{endpoint}", self.directories[index]);
            let error = match attach(self.request(method.clone(), &url)).send().await {
                Ok(response) => match Self::check(Service::Directory, response).await {
                    Err(error) if wait_when_unavailable && retry::is_transient(&error) => error,
                    outcome => return outcome,
                },
                Err(error) => {
                    let error = Error::unreachable(Service::Directory, &url, error);
                    if !retry::is_transient(&error) || (error.answer_lost() && !resend) {
                        return Err(error);
                    }
                    // Another request may have moved on already; then keep its choice.
                    let _ =
                        self.current
                            .compare_exchange(index, (index + 1) % count, Ordering::Relaxed, Ordering::Relaxed);
                    failed_in_turn += 1;
                    if failed_in_turn < count {
                        continue;
                    }
                    error
                }
            };
            failed_in_turn = 0;
            if !attempts.wait(&error).await {
                return Err(error);
            }
        }
    }

    /// A change that must not be applied twice (mkdir, rename, remove, an
    /// upload's commit). If the answer to `send` was lost, it is sent again
    /// (until an answer comes, within the deadline: a killed service can
    /// leave several pooled connections that each lose one); an error then
    /// is given to `confirm`, which looks whether an earlier attempt did the
    /// change after all (a directory that "exists" after a mkdir) and
    /// returns its result, or the error.
    pub(crate) async fn change<T, Send, SendFut, Confirm, ConfirmFut>(&self, send: Send, confirm: Confirm) -> Result<T>
    where
        Send: Fn() -> SendFut,
        SendFut: std::future::Future<Output = Result<T>>,
        Confirm: FnOnce(Error) -> ConfirmFut,
        ConfirmFut: std::future::Future<Output = Result<T>>,
    {
        let mut outcome = send().await;
        if !matches!(&outcome, Err(error) if error.answer_lost()) {
            return outcome;
        }
        let mut attempts = self.retry.attempts();
        loop {
            match outcome {
                Err(error) if error.answer_lost() => {
                    if !attempts.wait(&error).await {
                        return Err(error);
                    }
                    outcome = send().await;
                }
                Err(error) => return confirm(error).await,
                done => return done,
            }
        }
    }

    /// A directory service call whose answer has no body (204).
    pub(crate) async fn directory_no_content<B: Serialize>(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&B>,
    ) -> Result<()> {
        self.directory_send(method, endpoint, body).await?;
        Ok(())
    }

    /// A security service call, tried again like a directory service call
    /// (see [`retry`]); one whose answer was lost is sent again if it is a
    /// read, a login (a second session is harmless), a refresh, a logout
    /// or a password change.
    async fn security<B: Serialize>(&self, method: Method, endpoint: &str, body: Option<&B>) -> Result<Response> {
        let url = format!("{}{endpoint}", self.auth_url().await?);
        let resend = method == Method::GET
            || method == Method::PUT
            || ["/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"].contains(&endpoint);
        let mut attempts = self.retry.attempts();
        loop {
            let mut builder = self.request(method.clone(), &url);
            if let Some(body) = body {
                builder = builder.json(body);
            }
            match self.send(Service::Security, builder, &url).await {
                Err(error) if retry::is_transient(&error) && (resend || !error.answer_lost()) => {
                    if !attempts.wait(&error).await {
                        return Err(error);
                    }
                }
                outcome => return outcome,
            }
        }
    }

    async fn security_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        endpoint: &str,
        body: Option<&B>,
    ) -> Result<T> {
        self.security(method, endpoint, body)
            .await?
            .json()
            .await
            .map_err(|error| Error::Protocol(format!("reading the answer of {endpoint}: {error}")))
    }

    // ---- Security service ----

    /// Logs in; the caller decides whether to [`Client::set_ticket`] the result.
    pub async fn login(&self, name: &str, password: &str) -> Result<LoginResponse> {
        let request = LoginRequest {
            name: name.to_string(),
            password: password.to_string(),
        };
        self.security_json(Method::POST, "/v1/auth/login", Some(&request)).await
    }

    /// A new ticket for the same session, with a later expiry.
    pub async fn refresh(&self) -> Result<LoginResponse> {
        self.security_json::<(), _>(Method::POST, "/v1/auth/refresh", None)
            .await
    }

    /// Revokes the session everywhere.
    pub async fn logout(&self) -> Result<()> {
        self.security::<()>(Method::POST, "/v1/auth/logout", None).await?;
        Ok(())
    }

    /// Revokes every session of the caller, this one included.
    pub async fn logout_all(&self) -> Result<SessionsEnded> {
        self.security_json::<(), _>(Method::POST, "/v1/auth/logout-all", None)
            .await
    }

    /// Revokes every session of user `name` (admin).
    pub async fn end_sessions(&self, name: &str) -> Result<SessionsEnded> {
        self.security_json::<(), _>(Method::DELETE, &format!("/v1/users/{name}/sessions"), None)
            .await
    }

    pub async fn whoami(&self) -> Result<WhoAmI> {
        self.security_json::<(), _>(Method::GET, "/v1/auth/whoami", None).await
    }

    pub async fn list_users(&self) -> Result<Vec<UserInfo>> {
        self.security_json::<(), _>(Method::GET, "/v1/users", None).await
    }

    pub async fn create_user(&self, name: &str, password: &str, admin: bool) -> Result<UserInfo> {
        let request = CreateUserRequest {
            name: name.to_string(),
            password: password.to_string(),
            admin,
        };
        self.security_json(Method::POST, "/v1/users", Some(&request)).await
    }

    pub async fn delete_user(&self, name: &str) -> Result<()> {
        self.security::<()>(Method::DELETE, &format!("/v1/users/{name}"), None)
            .await?;
        Ok(())
    }

    /// Changes `name`'s password; `current` is required for one's own.
    /// Every other session of the user ends.
    pub async fn change_password(&self, name: &str, password: &str, current: Option<&str>) -> Result<()> {
        let request = ChangePasswordRequest {
            password: password.to_string(),
            current_password: current.map(str::to_string),
        };
        self.security(Method::PUT, &format!("/v1/users/{name}/password"), Some(&request))
            .await?;
        Ok(())
    }

    /// A new S3 access key for `user` (admin) or the caller; the answer holds
    /// the secret, which is never shown again.
    pub async fn create_access_key(&self, user: Option<&str>) -> Result<CreatedAccessKey> {
        let request = CreateAccessKeyRequest {
            user: user.map(str::to_string),
        };
        self.security_json(Method::POST, "/v1/keys", Some(&request)).await
    }

    /// The access keys of `user` (admin) or the caller.
    pub async fn list_access_keys(&self, user: Option<&str>) -> Result<Vec<AccessKeyInfo>> {
        let endpoint = match user {
            Some(user) => format!("/v1/keys?user={}", query_escape(user)),
            None => "/v1/keys".to_string(),
        };
        self.security_json::<(), _>(Method::GET, &endpoint, None).await
    }

    /// Deletes an access key; the tickets it was used for are revoked at once.
    pub async fn delete_access_key(&self, id: &str) -> Result<()> {
        self.security::<()>(Method::DELETE, &format!("/v1/keys/{}", query_escape(id)), None)
            .await?;
        Ok(())
    }

    /// The secret of key `id` and a ticket of its user (service tickets only: the S3 gateway).
    pub async fn access_key_session(&self, id: &str) -> Result<KeySession> {
        self.security_json::<(), _>(Method::POST, &format!("/v1/keys/{}/session", query_escape(id)), None)
            .await
    }

    // ---- Directory service ----

    pub async fn stat(&self, path: &DfsPath) -> Result<Stat> {
        self.directory::<(), _>(
            Method::GET,
            &format!("/v1/stat?path={}", query_escape(path.as_str())),
            None,
        )
        .await
    }

    /// The whole listing of directory `path`, read page by page (see
    /// [`Client::list_pages`]), so no single request or response grows with
    /// the directory.
    pub async fn list(&self, path: &DfsPath) -> Result<Listing> {
        let mut pages = self.list_pages(path);
        let mut entries = Vec::new();
        while let Some(page) = pages.next_page().await? {
            entries.extend(page);
        }
        Ok(Listing {
            path: path.clone(),
            entries,
            next_cursor: None,
        })
    }

    /// The listing of directory `path` as a stream of pages of at most
    /// `LIST_PAGE_DEFAULT` entries, each read when asked for: an entry there
    /// from the first page to the last comes exactly once, in name order.
    pub fn list_pages(&self, path: &DfsPath) -> ListPages<'_> {
        ListPages {
            client: self,
            path: path.clone(),
            cursor: None,
            done: false,
        }
    }

    /// One page of the listing of `path`: at most `limit` entries after the
    /// page whose `next_cursor` was `cursor`.
    pub async fn list_page(&self, path: &DfsPath, cursor: Option<&str>, limit: usize) -> Result<Listing> {
        let mut uri = format!("/v1/list?path={}&limit={limit}", query_escape(path.as_str()));
        if let Some(cursor) = cursor {
            uri.push_str(&format!("&cursor={}", query_escape(cursor)));
        }
        self.directory::<(), _>(Method::GET, &uri, None).await
    }

    pub async fn mkdir(&self, path: &DfsPath, parents: bool, mode: Option<u32>) -> Result<Stat> {
        let request = MkdirRequest {
            path: path.clone(),
            parents,
            mode,
        };
        self.change(
            || self.directory(Method::POST, "/v1/mkdir", Some(&request)),
            // Sent again after a lost answer: "exists" may be our own directory.
            |error| async move {
                match error.code() {
                    Some(dfs_proto::ErrorCode::AlreadyExists) => match self.stat(path).await {
                        Ok(stat) if stat.kind == dfs_proto::namespace::EntryKind::Dir => Ok(stat),
                        _ => Err(error),
                    },
                    _ => Err(error),
                }
            },
        )
        .await
    }

    /// Makes the missing directories between `base` (an existing
    /// directory: `NotFound` if it is not) and `path`'s parent, each of
    /// `inherited_dir_mode` of `base`'s mode, as a write with
    /// `parents_below` does (here in two requests: a stat of `base`, then
    /// `mkdir -p`).
    pub async fn make_parents_below(&self, path: &DfsPath, base: &DfsPath) -> Result<()> {
        let parent = path.parent().unwrap_or_else(DfsPath::root);
        let depth = base.components().count();
        if depth > parent.components().count() || !base.components().eq(parent.components().take(depth)) {
            let message = format!("{base} is not a directory above {path}");
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, message).into());
        }
        let base_stat = self.stat(base).await?;
        if parent == *base {
            return Ok(());
        }
        let mode = dfs_proto::namespace::inherited_dir_mode(base_stat.mode);
        match self.mkdir(&parent, true, Some(mode)).await {
            Ok(_) => Ok(()),
            // A file on the way, as the write with the file would say.
            Err(error) if error.code() == Some(dfs_proto::ErrorCode::AlreadyExists) => Err(Error::Api {
                status: 400,
                body: dfs_proto::ErrorBody::new(dfs_proto::ErrorCode::BadRequest, format!("not a directory: {error}")),
            }),
            Err(error) => Err(error),
        }
    }

    pub async fn remove(&self, path: &DfsPath, recursive: bool) -> Result<()> {
        let request = RemoveRequest {
            path: path.clone(),
            recursive,
        };
        self.change(
            || self.directory_no_content(Method::POST, "/v1/remove", Some(&request)),
            // Sent again after a lost answer: "not found" is the removal done.
            |error| async move {
                match error.is_not_found() {
                    true => Ok(()),
                    false => Err(error),
                }
            },
        )
        .await
    }

    pub async fn rename(&self, from: &DfsPath, to: &DfsPath, no_clobber: bool) -> Result<Stat> {
        let request = RenameRequest {
            from: from.clone(),
            to: to.clone(),
            no_clobber,
        };
        self.change(
            || self.directory(Method::POST, "/v1/rename", Some(&request)),
            // Sent again after a lost answer: the source gone and the
            // target there is the rename done.
            |error| async move {
                if !error.is_not_found() || !matches!(self.stat(from).await, Err(gone) if gone.is_not_found()) {
                    return Err(error);
                }
                self.stat(to).await.map_err(|_| error)
            },
        )
        .await
    }

    /// Makes `to` another name of the file `from` (a hard link, `POST
    /// /v1/files/link`); returns the file under its new name, its `nlink`
    /// one more.
    pub async fn link(&self, from: &DfsPath, to: &DfsPath) -> Result<Stat> {
        let request = LinkRequest {
            from: from.clone(),
            to: to.clone(),
        };
        self.change(
            || self.directory(Method::POST, "/v1/files/link", Some(&request)),
            // Sent again after a lost answer: "exists" may be our own link,
            // `to` then naming the inode `from` names.
            |error| async move {
                if error.code() != Some(dfs_proto::ErrorCode::AlreadyExists) {
                    return Err(error);
                }
                match (self.stat(from).await, self.stat(to).await) {
                    (Ok(file), Ok(linked)) if file.inode.is_some() && file.inode == linked.inode => Ok(linked),
                    _ => Err(error),
                }
            },
        )
        .await
    }

    /// Writes `request.path` as the contents of `request.sources`, one after
    /// the other, by referring to their chunks (`POST /v1/files/compose`):
    /// no byte is sent or copied, and the file appears whole or not at all.
    pub async fn compose(&self, request: &ComposeFiles) -> Result<Stat> {
        self.change(
            || self.directory(Method::POST, "/v1/files/compose", Some(request)),
            // Sent again after a lost answer: "exists" (no-clobber) or a
            // moved version may be our compose done; it is if the file has
            // exactly the sources' chunks.
            |error| async move {
                let maybe_done = matches!(
                    error.code(),
                    Some(dfs_proto::ErrorCode::AlreadyExists | dfs_proto::ErrorCode::PreconditionFailed)
                );
                if !maybe_done || self.scope.tx.is_some() {
                    return Err(error);
                }
                let mut chunks = Vec::new();
                for source in &request.sources {
                    match self.layout(&source.path).await {
                        Ok(layout) if !layout.inline => {
                            chunks.extend(layout.chunks.into_iter().map(|chunk| dfs_proto::namespace::ChunkRef {
                                id: chunk.id,
                                size: chunk.size,
                            }))
                        }
                        _ => return Err(error),
                    }
                }
                match self.layout(&request.path).await {
                    Ok(layout) if !layout.inline && transfer::put::same_chunks(&layout.chunks, &chunks) => {
                        Ok(layout.stat)
                    }
                    _ => Err(error),
                }
            },
        )
        .await
    }

    pub async fn chmod(&self, path: &DfsPath, mode: u32) -> Result<Stat> {
        let request = ChmodRequest {
            path: path.clone(),
            mode,
        };
        self.directory(Method::POST, "/v1/chmod", Some(&request)).await
    }

    /// Sets the mtime of `path` to `mtime_ms`, or to now if `None` (see
    /// [`SetTimesRequest`]); its ctime becomes now.
    pub async fn set_times(&self, path: &DfsPath, mtime_ms: Option<u64>) -> Result<Stat> {
        let request = SetTimesRequest {
            path: path.clone(),
            mtime_ms,
        };
        self.directory(Method::POST, "/v1/times", Some(&request)).await
    }

    /// Sets (or with `None` clears) the local owner of `path`, as chmod
    /// (its owner or an admin): `POST /v1/local-owner`.
    pub async fn set_local_owner(&self, path: &DfsPath, local_owner: Option<LocalOwner>) -> Result<Stat> {
        let request = LocalOwnerRequest {
            path: path.clone(),
            local_owner,
        };
        self.directory(Method::POST, "/v1/local-owner", Some(&request)).await
    }

    pub async fn chown(&self, path: &DfsPath, owner: &str) -> Result<Stat> {
        let request = ChownRequest {
            path: path.clone(),
            owner: owner.to_string(),
        };
        self.directory(Method::POST, "/v1/chown", Some(&request)).await
    }

    /// The whole layout of the file at `path`: every chunk, read a page at
    /// a time, all of one version (a file that changes meanwhile is read
    /// again from its start). Its size grows with the file's: a long read
    /// goes page by page with [`Client::layout_page`] instead.
    pub async fn layout(&self, path: &DfsPath) -> Result<FileLayout> {
        let mut attempts = 0;
        'again: loop {
            let mut layout = self.layout_page(path, 0, LAYOUT_PAGE_MAX, None).await?;
            while let Some(offset) = layout.next_offset.take() {
                let page = match self
                    .layout_page(path, offset, LAYOUT_PAGE_MAX, Some(layout.stat.version))
                    .await
                {
                    Err(error) if error.code() == Some(ErrorCode::PreconditionFailed) && attempts < 3 => {
                        attempts += 1;
                        continue 'again;
                    }
                    page => page?,
                };
                layout.chunks.extend(page.chunks);
                layout.next_offset = page.next_offset;
            }
            return Ok(layout);
        }
    }

    /// The first page of the layout of the file at `path`, what a read
    /// starts from: [`Client::get_file_with_summary`] asks for the others
    /// as it goes on, so that memory does not grow with the file.
    pub async fn first_layout_page(&self, path: &DfsPath) -> Result<FileLayout> {
        self.layout_page(path, 0, dfs_proto::namespace::UPLOAD_PAGE_CHUNKS, None)
            .await
    }

    /// One page of the layout of the file at `path`: at most `limit` chunks
    /// from the one holding byte `offset`, each with a fresh read
    /// capability; `next_offset` names the next page. With `version`, a
    /// file at another version is refused (`PreconditionFailed`).
    pub async fn layout_page(
        &self,
        path: &DfsPath,
        offset: u64,
        limit: usize,
        version: Option<u64>,
    ) -> Result<FileLayout> {
        let mut endpoint = format!(
            "/v1/layout?path={}&offset={offset}&limit={limit}",
            query_escape(path.as_str())
        );
        if let Some(version) = version {
            endpoint.push_str(&format!("&version={version}"));
        }
        self.directory::<(), _>(Method::GET, &endpoint, None).await
    }

    /// The file servers, the namespace's counts and the chunks still to
    /// re-replicate (counts whole tables in the database).
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        self.directory::<(), _>(Method::GET, "/v1/cluster/status", None).await
    }

    /// The file servers and the chunks still to re-replicate, without
    /// counting the namespace: cheap whatever the size of the cluster.
    pub async fn cluster_servers(&self) -> Result<dfs_proto::namespace::ServerList> {
        self.directory::<(), _>(Method::GET, "/v1/cluster/servers", None).await
    }

    /// Starts (or with `cancel`, stops) draining a file server, named by id or
    /// URL: it gets no new chunks and its replicas are copied elsewhere (admin).
    pub async fn drain(&self, server: &str, cancel: bool) -> Result<()> {
        let request = dfs_proto::namespace::DrainRequest {
            server: server.to_string(),
            cancel,
        };
        self.directory_no_content(Method::POST, "/v1/cluster/drain", Some(&request))
            .await
    }
}

/// The pages of a listing (see [`Client::list_pages`]).
pub struct ListPages<'c> {
    client: &'c Client,
    path: DfsPath,
    cursor: Option<String>,
    done: bool,
}

impl ListPages<'_> {
    /// The next page's entries, or `None` after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Vec<dfs_proto::namespace::Stat>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .client
            .list_page(
                &self.path,
                self.cursor.as_deref(),
                dfs_proto::namespace::LIST_PAGE_DEFAULT,
            )
            .await?;
        self.cursor = page.next_cursor;
        self.done = self.cursor.is_none();
        Ok(Some(page.entries))
    }
}

/// Percent-encodes a query parameter value (every byte but the unreserved
/// ones and `/`); also S3's `encoding-type=url` for keys.
pub fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}
