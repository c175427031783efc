//! The security service's HTTP routes.

use crate::gate::HashGate;
use crate::limiter::{Attempt, LoginLimiter, Refused};
use crate::password;
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use dfs_proto::auth::{
    validate_password, validate_user_name, ChangePasswordRequest, CreateUserRequest, LoginRequest, LoginResponse,
    RevokedSession, RevokedSessions, SessionsEnded, UserInfo, WhoAmI, FORWARDED_CLIENT_HEADER,
};
use dfs_proto::namespace::{EnsureHome, Stat};
use dfs_proto::ticket::{Role, Ticket};
use dfs_proto::ErrorCode;
use dfs_seal::ClusterKey;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller, ClientAddr, ForwardRequestId, Verifier};
use dfs_store::{SessionRecord, Store, StoreError, UserRecord};
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How the security service runs.
pub struct Config {
    pub store: Arc<dyn Store>,
    pub key: ClusterKey,
    /// Lifetime of a ticket; clients refresh before it ends. Default 1 hour.
    pub ticket_ttl: Duration,
    /// Absolute lifetime of a session from its login: no refresh extends a
    /// ticket past it. Default 12 hours.
    pub session_lifetime: Duration,
    /// Directory service(s), comma-separated, to ask for a new user's home directory (best effort).
    pub directory_url: Option<String>,
}

impl Config {
    pub const DEFAULT_TICKET_TTL: Duration = Duration::from_secs(3600);
    pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
}

/// The service's state; cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct AuthService {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) verifier: Arc<Verifier>,
    limiter: Arc<LoginLimiter>,
    hashing: Arc<HashGate>,
    ticket_ttl: Duration,
    session_lifetime: Duration,
    directory_url: Option<String>,
    http: reqwest::Client,
}

impl FromRef<AuthService> for Arc<Verifier> {
    fn from_ref(service: &AuthService) -> Arc<Verifier> {
        Arc::clone(&service.verifier)
    }
}

impl AuthService {
    pub fn new(config: Config) -> Self {
        AuthService {
            store: config.store,
            verifier: Verifier::new(config.key),
            limiter: Arc::default(),
            hashing: HashGate::for_this_machine(),
            ticket_ttl: config.ticket_ttl,
            session_lifetime: config.session_lifetime,
            directory_url: config.directory_url,
            http: dfs_service::http_client()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("building an HTTP client"),
        }
    }

    /// Loads the revocation list from the store into the local verifier.
    pub(crate) fn refresh_revocations(&self) -> anyhow::Result<()> {
        let revoked = self.store.revoked_sessions(dfs_seal::now())?;
        self.verifier
            .revoke(revoked.into_iter().map(|session| (session.sid, session.expires_at)));
        Ok(())
    }
}

/// What the security service's OpenAPI document says about it.
pub const API_INFO: dfs_service::ApiInfo = dfs_service::ApiInfo {
    title: "DFS security service",
    description: "Users, logins and sessions, S3 access keys. A login answers a sealed ticket; every \
        other call carries it as `Authorization: Bearer <ticket>`, and every service opens it \
        locally. Every error is `{\"code\", \"message\"}` with the HTTP status of its code.",
};

/// The routes of the security service, each with its operation in the document.
fn api_routes() -> OpenApiRouter<AuthService> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
        .routes(routes!(whoami))
        .routes(routes!(revoked))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, delete_user))
        .routes(routes!(change_password))
        .routes(routes!(end_user_sessions))
        .routes(routes!(crate::keys::list_keys, crate::keys::create_key))
        .routes(routes!(crate::keys::delete_key))
        .routes(routes!(crate::keys::key_session))
}

/// The security service's OpenAPI document, as served at `/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    dfs_service::openapi::document(api_routes().into_openapi(), API_INFO)
}

/// The routes of the security service.
pub fn router(service: AuthService) -> Router {
    dfs_service::finish_api(api_routes().with_state(service), dfs_service::Metrics::new(), API_INFO)
}

/// Serves the security service on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let service = AuthService::new(config);
    // Engines block (a database round trip): never on the async threads.
    let starting = service.clone();
    tokio::task::spawn_blocking(move || starting.refresh_revocations()).await??;
    // Other processes sharing the store (or a restart) may revoke sessions;
    // keep the local list in step with the store.
    let poller = {
        let service = service.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(dfs_service::caller::REVOCATION_POLL).await;
                let service = service.clone();
                match tokio::task::spawn_blocking(move || service.refresh_revocations()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::warn!(error = %format!("{error:#}"), "reading revoked sessions"),
                    Err(error) => tracing::warn!(%error, "reading revoked sessions"),
                }
            }
        })
    };
    let result = dfs_service::serve(listener, router(service), shutdown).await;
    poller.abort();
    Ok(result?)
}

/// Runs blocking store or hashing work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work).await?
}

fn user_info(user: &UserRecord) -> UserInfo {
    UserInfo {
        uid: user.uid,
        name: user.name.clone(),
        admin: user.admin,
        created_at: user.created_at,
    }
}

pub(crate) fn check_name(name: &str) -> ApiResult<()> {
    validate_user_name(name).map_err(|error| ApiError::bad_request(error.to_string()))
}

const BAD_LOGIN: &str = "invalid user name or password";

/// A 429 for a login the limiter holds back, with `Retry-After`.
fn too_many_attempts(refused: Refused) -> Response {
    let mut response = ApiError::new(ErrorCode::TooManyRequests, refused.message()).into_response();
    response
        .headers_mut()
        .insert("retry-after", HeaderValue::from(refused.wait_seconds()));
    response
}

/// A 503 from the hashing gate gets `Retry-After` too.
fn with_retry_after(error: ApiError) -> Response {
    let busy = error.code() == ErrorCode::Unavailable;
    let mut response = error.into_response();
    if busy {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(crate::gate::retry_after_seconds()));
    }
    response
}

/// Whose failed logins a login counts against: the TCP peer, or the
/// browser's address a DFS service forwarding the login names in
/// [`FORWARDED_CLIENT_HEADER`] (only with a valid service ticket: anyone
/// else could pick an address to dodge the limits or to lock others out).
struct LoginClient(IpAddr);

impl FromRequestParts<AuthService> for LoginClient {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &AuthService) -> Result<Self, ApiError> {
        let Some(forwarded) = parts.headers.get(FORWARDED_CLIENT_HEADER).cloned() else {
            let ClientAddr(client) = ClientAddr::from_request_parts(parts, service)
                .await
                .unwrap_or_else(|never| match never {});
            return Ok(LoginClient(client));
        };
        let Caller(ticket) = Caller::from_request_parts(parts, service).await?;
        if !ticket.is_service() {
            return Err(ApiError::permission_denied(format!(
                "permission denied: {FORWARDED_CLIENT_HEADER} is taken from DFS services only"
            )));
        }
        forwarded
            .to_str()
            .ok()
            .and_then(|address| address.trim().parse().ok())
            .map(LoginClient)
            .ok_or_else(|| ApiError::bad_request(format!("{FORWARDED_CLIENT_HEADER} is not an IP address")))
    }
}

/// Log in: a sealed ticket for a new session.
///
/// Failed logins are slowed down per user name and client address, per address and service-wide
/// (429 with Retry-After); 503 with Retry-After when too many passwords are being checked.
/// `x-dfs-forwarded-client` (the client's address, from the directory service's forwarded login)
/// is taken with a service ticket only (401 without a ticket, 403 with a user's).
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, description = "a sealed ticket", body = LoginResponse)))]
async fn login(
    State(service): State<AuthService>,
    LoginClient(client): LoginClient,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Response {
    match login_inner(service, client, request).await {
        Ok(response) => ApiJson(response).into_response(),
        Err(LoginError::Api(error)) => with_retry_after(error),
        Err(LoginError::Wait(refused)) => too_many_attempts(refused),
    }
}

enum LoginError {
    Api(ApiError),
    Wait(Refused),
}

impl From<ApiError> for LoginError {
    fn from(error: ApiError) -> Self {
        LoginError::Api(error)
    }
}

/// Checks `password` against `name`'s hash (or against nothing, in the same
/// time, if there is no such user) on the hashing gate, within a reserved
/// limiter attempt. `Ok(None)`: wrong name or password.
async fn check_password(
    service: &AuthService,
    attempt: Attempt,
    name: &str,
    password: String,
) -> ApiResult<Option<UserRecord>> {
    let user = {
        let service = service.clone();
        let name = name.to_string();
        blocking(move || service.store.user_by_name(&name).map_err(ApiError::from)).await?
    };
    let checked = service
        .hashing
        .run(move || match user {
            Some(user) if password::verify(&user.password_hash, &password) => Some(user),
            Some(_) => None,
            None => {
                password::verify_against_nothing(&password);
                None
            }
        })
        .await;
    match checked {
        Ok(Some(user)) => {
            attempt.succeeded(Instant::now());
            Ok(Some(user))
        }
        Ok(None) => {
            attempt.failed();
            Ok(None)
        }
        // Busy: not the client's fault, so not charged as a failure.
        Err(error) => {
            attempt.cancelled(Instant::now());
            Err(error)
        }
    }
}

async fn login_inner(service: AuthService, client: IpAddr, request: LoginRequest) -> Result<LoginResponse, LoginError> {
    check_name(&request.name)?;
    if request.password.len() > dfs_proto::auth::MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request("password is too long").into());
    }
    let attempt = service
        .limiter
        .begin(&request.name, client, Instant::now())
        .map_err(LoginError::Wait)?;
    let Some(user) = check_password(&service, attempt, &request.name, request.password).await? else {
        return Err(ApiError::unauthenticated(BAD_LOGIN).into());
    };
    Ok(issue_ticket(&service, &user, Issue::Login).await?)
}

/// What an [`issue_ticket`] is for.
enum Issue {
    /// A login: a new session, created only if the user still has the
    /// password hash the login verified.
    Login,
    /// A refresh of this session, which ends at `ends_at` whatever happens.
    Refresh { sid: String, ends_at: u64 },
}

/// The ticket of `user` in session `sid`.
pub(crate) fn user_ticket(user: &UserRecord, sid: String, now: u64, expires_at: u64, session_ends_at: u64) -> Ticket {
    let mut roles = vec![Role::User];
    if user.admin {
        roles.push(Role::Admin);
    }
    Ticket {
        uid: user.uid,
        name: user.name.clone(),
        roles,
        sid,
        issued_at: now,
        expires_at,
        session_ends_at,
    }
}

/// Seals a ticket for `user`, in a new session or extending one.
async fn issue_ticket(service: &AuthService, user: &UserRecord, issue: Issue) -> ApiResult<LoginResponse> {
    let now = dfs_seal::now();
    let (sid, session_ends_at) = match &issue {
        Issue::Login => (dfs_seal::random_id(), now + service.session_lifetime.as_secs()),
        Issue::Refresh { sid, ends_at } => (sid.clone(), *ends_at),
    };
    let expires_at = (now + service.ticket_ttl.as_secs()).min(session_ends_at);
    let ticket = user_ticket(user, sid, now, expires_at, session_ends_at);
    {
        let service = service.clone();
        let session = SessionRecord {
            sid: ticket.sid.clone(),
            uid: user.uid,
            expires_at,
            revoked: false,
        };
        let password_hash = user.password_hash.clone();
        let refresh = matches!(issue, Issue::Refresh { .. });
        blocking(move || {
            if refresh {
                service
                    .store
                    .extend_session(&session.sid, expires_at)
                    .map_err(|error| match error {
                        StoreError::NotFound(_) => ApiError::unauthenticated("session revoked: run `dfs login`"),
                        other => other.into(),
                    })
            } else {
                // The user was deleted, or its password changed, since the check.
                service
                    .store
                    .create_session(&session, &password_hash)
                    .map_err(|error| match error {
                        StoreError::NotFound(_) => ApiError::unauthenticated(BAD_LOGIN),
                        other => other.into(),
                    })
            }
        })
        .await?;
    }
    Ok(LoginResponse {
        ticket: service.verifier.key().seal_ticket(&ticket),
        expires_at,
        user: user_info(user),
    })
}

/// A new ticket for the same session with a later expiry.
///
/// Never past the session's absolute end (12 h after the login by default); not for service tickets.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "auth",
    responses((status = 200, description = "the new ticket", body = LoginResponse)))]
async fn refresh(State(service): State<AuthService>, Caller(ticket): Caller) -> ApiResult<ApiJson<LoginResponse>> {
    if ticket.is_service() {
        return Err(ApiError::bad_request("service tickets are not refreshed"));
    }
    let user = {
        let service = service.clone();
        let name = ticket.name.clone();
        blocking(move || service.store.user_by_name(&name).map_err(ApiError::from)).await?
    };
    // A user deleted (and perhaps re-created under the same name) loses its sessions.
    let user = user
        .filter(|user| user.uid == ticket.uid)
        .ok_or_else(|| ApiError::unauthenticated("user no longer exists"))?;
    if ticket.session_ends_at == 0 {
        return Err(ApiError::unauthenticated(
            "a ticket of an older version is not refreshed: run `dfs login`",
        ));
    }
    if ticket.session_ends_at <= dfs_seal::now() {
        return Err(ApiError::unauthenticated("session ended: run `dfs login`"));
    }
    let issue = Issue::Refresh {
        sid: ticket.sid,
        ends_at: ticket.session_ends_at,
    };
    Ok(ApiJson(issue_ticket(&service, &user, issue).await?))
}

/// Revokes the caller's session on every service.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", responses((status = 204, description = "logged out")))]
async fn logout(State(service): State<AuthService>, Caller(ticket): Caller) -> ApiResult<StatusCode> {
    let sid = ticket.sid.clone();
    let store_service = service.clone();
    blocking(move || store_service.store.revoke_session(&sid).map_err(ApiError::from)).await?;
    service.verifier.revoke([(ticket.sid, ticket.expires_at)]);
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller, this one included.
#[utoipa::path(post, path = "/v1/auth/logout-all", tag = "auth",
    responses((status = 200, description = "how many sessions ended", body = SessionsEnded)))]
async fn logout_all(State(service): State<AuthService>, Caller(ticket): Caller) -> ApiResult<ApiJson<SessionsEnded>> {
    if ticket.is_service() {
        return Err(ApiError::bad_request("service tickets have no sessions"));
    }
    Ok(ApiJson(end_sessions(&service, ticket.uid).await?))
}

/// Revokes every session of a user on every service (admin).
#[utoipa::path(delete, path = "/v1/users/{name}/sessions", tag = "users", params(("name" = String, Path, description = "a user name: [a-z][a-z0-9_-]{0,31}")),
    responses((status = 200, description = "how many sessions ended", body = SessionsEnded)))]
async fn end_user_sessions(
    State(service): State<AuthService>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<ApiJson<SessionsEnded>> {
    caller.require_admin()?;
    check_name(&name)?;
    let user = {
        let service = service.clone();
        let name = name.clone();
        blocking(move || service.store.user_by_name(&name).map_err(ApiError::from)).await?
    };
    let user = user.ok_or_else(|| ApiError::not_found(format!("no such user: {name}")))?;
    let ended = end_sessions(&service, user.uid).await?;
    tracing::info!(user = %name, sessions = ended.sessions, "ended every session of the user");
    Ok(ApiJson(ended))
}

/// Revokes every session of `uid`; this service refuses their tickets at
/// once, the others from their next revocation poll.
async fn end_sessions(service: &AuthService, uid: u64) -> ApiResult<SessionsEnded> {
    let service = service.clone();
    blocking(move || {
        let sessions = service.store.revoke_user_sessions(uid)?;
        service.refresh_revocations()?;
        Ok(SessionsEnded { sessions })
    })
    .await
}

/// The caller's ticket, opened.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth", responses((status = 200, description = "the ticket", body = WhoAmI)))]
async fn whoami(Caller(ticket): Caller) -> ApiJson<WhoAmI> {
    ApiJson(WhoAmI {
        uid: ticket.uid,
        name: ticket.name,
        roles: ticket.roles,
        session: ticket.sid,
        issued_at: ticket.issued_at,
        expires_at: ticket.expires_at,
    })
}

/// Revoked sessions whose tickets have not expired (service tickets only).
#[utoipa::path(get, path = "/v1/auth/revoked", tag = "auth",
    responses((status = 200, description = "the revocation list", body = RevokedSessions)))]
async fn revoked(State(service): State<AuthService>, caller: Caller) -> ApiResult<ApiJson<RevokedSessions>> {
    caller.require_service()?;
    let sessions = blocking(move || service.store.revoked_sessions(dfs_seal::now()).map_err(ApiError::from)).await?;
    Ok(ApiJson(RevokedSessions {
        sessions: sessions
            .into_iter()
            .map(|session| RevokedSession {
                sid: session.sid,
                expires_at: session.expires_at,
            })
            .collect(),
    }))
}

/// Every user (admin).
#[utoipa::path(get, path = "/v1/users", tag = "users", responses((status = 200, description = "the users", body = Vec<UserInfo>)))]
async fn list_users(State(service): State<AuthService>, caller: Caller) -> ApiResult<ApiJson<Vec<UserInfo>>> {
    caller.require_admin()?;
    let users = blocking(move || service.store.list_users().map_err(ApiError::from)).await?;
    Ok(ApiJson(users.iter().map(user_info).collect()))
}

/// One user (admin, service, or the user itself).
#[utoipa::path(get, path = "/v1/users/{name}", tag = "users", params(("name" = String, Path, description = "a user name: [a-z][a-z0-9_-]{0,31}")),
    responses((status = 200, description = "the user", body = UserInfo)))]
async fn get_user(
    State(service): State<AuthService>,
    Caller(ticket): Caller,
    Path(name): Path<String>,
) -> ApiResult<ApiJson<UserInfo>> {
    check_name(&name)?;
    if !(ticket.is_admin() || ticket.is_service() || ticket.name == name) {
        return Err(ApiError::permission_denied(
            "permission denied: you may only look up yourself",
        ));
    }
    let shown = name.clone();
    let user = blocking(move || service.store.user_by_name(&name).map_err(ApiError::from)).await?;
    user.map(|user| ApiJson(user_info(&user)))
        .ok_or_else(|| ApiError::not_found(format!("no such user: {shown}")))
}

/// Creates a user and its home directory (admin).
///
/// 409 if /home/NAME exists (left by a deleted user of that name).
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = CreateUserRequest,
    responses((status = 201, description = "created", body = UserInfo)))]
async fn create_user(
    State(service): State<AuthService>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, ApiJson<UserInfo>)> {
    caller.require_admin()?;
    check_name(&request.name)?;
    validate_password(&request.password).map_err(ApiError::bad_request)?;
    let existing = {
        let service = service.clone();
        let name = request.name.clone();
        blocking(move || service.store.user_by_name(&name).map_err(ApiError::from)).await?
    };
    if existing.is_some() {
        return Err(ApiError::already_exists(format!(
            "user already exists: {}",
            request.name
        )));
    }
    // A home left by a deleted user of the same name belongs to its old uid:
    // the new user could not use it, and must not inherit what is in it.
    if let Some(home) = existing_home(&service, &request.name).await {
        return Err(ApiError::conflict(format!(
            "{} already exists, owned by uid {} (a deleted user's?): move or remove it first \
             (as admin: `dfs mv {} {}.old`), then add the user",
            home.path, home.owner_uid, home.path, home.path
        )));
    }
    let hash = service.hashing.run(move || password::hash(&request.password)).await??;
    let user = {
        let service = service.clone();
        blocking(move || {
            service
                .store
                .create_user(&request.name, &hash, request.admin, dfs_seal::now())
                .map_err(|error| match error {
                    StoreError::AlreadyExists(_) => {
                        ApiError::already_exists(format!("user already exists: {}", request.name))
                    }
                    other => other.into(),
                })
        })
        .await?
    };
    ensure_home(&service, &user).await;
    Ok((StatusCode::CREATED, ApiJson(user_info(&user))))
}

/// The stat of `/home/NAME` if the directory service says it exists;
/// `None` if it does not, or if no directory service answers (then the
/// creation goes ahead, as the home is created best effort anyway).
async fn existing_home(service: &AuthService, name: &str) -> Option<Stat> {
    let directory_urls = service.directory_url.as_ref()?;
    for directory_url in directory_urls.split(',').map(str::trim).filter(|url| !url.is_empty()) {
        let url = format!("{}/v1/stat?path=/home/{name}", directory_url.trim_end_matches('/'));
        let response = service
            .http
            .get(&url)
            .bearer_auth(service.verifier.service_ticket("auth"))
            .forward_request_id()
            .send()
            .await;
        match response {
            Ok(response) if response.status() == StatusCode::NOT_FOUND => return None,
            Ok(response) if response.status().is_success() => match response.json::<Stat>().await {
                Ok(stat) => return Some(stat),
                Err(error) => tracing::warn!(%error, %url, "reading the stat of a home directory"),
            },
            Ok(response) => tracing::warn!(status = %response.status(), %url, "looking up a home directory"),
            Err(error) => tracing::warn!(%error, %url, "looking up a home directory"),
        }
    }
    None
}

/// Asks the directory service for the user's home. Best effort: the directory
/// service also creates a missing home on the user's first request.
async fn ensure_home(service: &AuthService, user: &UserRecord) {
    let Some(directory_urls) = &service.directory_url else {
        return;
    };
    // Comma-separated when several directory services share the namespace: one is enough.
    for directory_url in directory_urls.split(',').map(str::trim).filter(|url| !url.is_empty()) {
        let url = format!("{}/v1/homes", directory_url.trim_end_matches('/'));
        let result = service
            .http
            .post(&url)
            .bearer_auth(service.verifier.service_ticket("auth"))
            .forward_request_id()
            .json(&EnsureHome {
                uid: user.uid,
                name: user.name.clone(),
            })
            .send()
            .await
            .and_then(|response| response.error_for_status());
        match result {
            Ok(_) => return,
            Err(error) => {
                tracing::warn!(%error, user = %user.name, %url, "could not create the home directory now; it will be created on first use")
            }
        }
    }
}

/// Deletes a user and revokes its sessions (admin).
#[utoipa::path(delete, path = "/v1/users/{name}", tag = "users", params(("name" = String, Path, description = "a user name: [a-z][a-z0-9_-]{0,31}")), responses((status = 204, description = "deleted")))]
async fn delete_user(
    State(service): State<AuthService>,
    Caller(ticket): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    if !ticket.is_admin() {
        return Err(ApiError::permission_denied("permission denied: admin only"));
    }
    check_name(&name)?;
    if name == ticket.name {
        return Err(ApiError::conflict("you cannot delete yourself"));
    }
    let store_service = service.clone();
    let user = blocking(move || {
        store_service.store.delete_user(&name).map_err(|error| match error {
            StoreError::NotFound(_) => ApiError::not_found(format!("no such user: {name}")),
            other => other.into(),
        })
    })
    .await?;
    tracing::info!(user = %user.name, uid = user.uid, "deleted user; its sessions are revoked");
    blocking(move || service.refresh_revocations().map_err(ApiError::from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Changes a password: an admin's reset, or the user itself with `current_password`.
///
/// Every other session of the user is revoked (all of them on an admin's reset).
#[utoipa::path(put, path = "/v1/users/{name}/password", tag = "users", params(("name" = String, Path, description = "a user name: [a-z][a-z0-9_-]{0,31}")),
    request_body = ChangePasswordRequest, responses((status = 204, description = "changed")))]
async fn change_password(
    State(service): State<AuthService>,
    Caller(ticket): Caller,
    ClientAddr(client): ClientAddr,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> Response {
    match change_password_inner(service, ticket, client, name, request).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(LoginError::Api(error)) => with_retry_after(error),
        Err(LoginError::Wait(refused)) => too_many_attempts(refused),
    }
}

/// A user changing its own password gives the current one (a stolen ticket
/// alone must not take the account over), checked like a login; every
/// other session of the user ends. An admin resetting another user's
/// password needs none, and ends all of that user's sessions.
async fn change_password_inner(
    service: AuthService,
    ticket: Ticket,
    client: IpAddr,
    name: String,
    request: ChangePasswordRequest,
) -> Result<(), LoginError> {
    check_name(&name)?;
    let own = ticket.name == name && !ticket.is_service();
    if !(ticket.is_admin() || own) {
        return Err(
            ApiError::permission_denied("permission denied: only admin may change another user's password").into(),
        );
    }
    validate_password(&request.password).map_err(ApiError::bad_request)?;
    if own {
        let current = request.current_password.ok_or_else(|| {
            ApiError::bad_request("changing your own password needs the current one (`current_password`)")
        })?;
        if current.len() > dfs_proto::auth::MAX_PASSWORD_LEN {
            return Err(ApiError::bad_request("password is too long").into());
        }
        let attempt = service
            .limiter
            .begin(&name, client, Instant::now())
            .map_err(LoginError::Wait)?;
        let user = check_password(&service, attempt, &name, current).await?;
        if user.is_none_or(|user| user.uid != ticket.uid) {
            return Err(ApiError::permission_denied("the current password is wrong").into());
        }
    }
    let hash = service
        .hashing
        .run(move || password::hash(&request.password))
        .await?
        .map_err(ApiError::from)?;
    let keep_session = own.then_some(ticket.sid);
    let shown = name.clone();
    blocking(move || {
        service
            .store
            .set_password_hash(&name, &hash, keep_session.as_deref())
            .map_err(|error| match error {
                StoreError::NotFound(_) => ApiError::not_found(format!("no such user: {name}")),
                other => other.into(),
            })?;
        service.refresh_revocations()?;
        Ok(())
    })
    .await?;
    tracing::info!(user = %shown, by = %ticket.name, "changed the password; the user's other sessions are revoked");
    Ok(())
}
