//! The security service's HTTP routes.

use crate::limiter::LoginLimiter;
use crate::password;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use dfs_proto::auth::{
    validate_password, validate_user_name, ChangePasswordRequest, CreateUserRequest, LoginRequest, LoginResponse,
    RevokedSession, RevokedSessions, UserInfo, WhoAmI,
};
use dfs_proto::namespace::EnsureHome;
use dfs_proto::ticket::{Role, Ticket};
use dfs_proto::ErrorCode;
use dfs_seal::ClusterKey;
use dfs_service::{ApiError, ApiJson, ApiResult, Caller, ForwardRequestId, Verifier};
use dfs_store::{SessionRecord, Store, StoreError, UserRecord};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How the security service runs.
pub struct Config {
    pub store: Arc<dyn Store>,
    pub key: ClusterKey,
    /// Lifetime of a ticket; clients refresh before it ends. Default 1 hour.
    pub ticket_ttl: Duration,
    /// Directory service(s), comma-separated, to ask for a new user's home directory (best effort).
    pub directory_url: Option<String>,
}

impl Config {
    pub const DEFAULT_TICKET_TTL: Duration = Duration::from_secs(3600);
}

/// The service's state; cheap to clone (everything inside is shared).
#[derive(Clone)]
pub struct AuthService {
    store: Arc<dyn Store>,
    verifier: Arc<Verifier>,
    limiter: Arc<LoginLimiter>,
    ticket_ttl: Duration,
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
            ticket_ttl: config.ticket_ttl,
            directory_url: config.directory_url,
            http: dfs_service::http_client()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("building an HTTP client"),
        }
    }

    /// Loads the revocation list from the store into the local verifier.
    fn refresh_revocations(&self) -> anyhow::Result<()> {
        let revoked = self.store.revoked_sessions(dfs_seal::now())?;
        self.verifier
            .revoke(revoked.into_iter().map(|session| (session.sid, session.expires_at)));
        Ok(())
    }
}

/// The routes of the security service.
pub fn router(service: AuthService) -> Router {
    let routes = Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/whoami", get(whoami))
        .route("/v1/auth/revoked", get(revoked))
        .route("/v1/users", get(list_users).post(create_user))
        .route("/v1/users/{name}", get(get_user).delete(delete_user))
        .route("/v1/users/{name}/password", put(change_password))
        .with_state(service);
    dfs_service::finish_router(routes)
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

fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::NotFound(what) => ApiError::not_found(format!("no such {what}")),
        StoreError::AlreadyExists(what) => ApiError::already_exists(format!("{what} already exists")),
        StoreError::Conflict(what) => ApiError::conflict(what),
        StoreError::PermissionDenied(what) => ApiError::permission_denied(what),
        StoreError::Locked(what) => ApiError::new(ErrorCode::Locked, what),
        StoreError::TooMany(what) => ApiError::new(ErrorCode::TooManyRequests, what),
        StoreError::Invalid(what) => ApiError::bad_request(what),
        StoreError::Backend(error) => ApiError::internal(format!("{error:#}")),
    }
}

/// Runs blocking store or hashing work off the async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
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

fn check_name(name: &str) -> ApiResult<()> {
    validate_user_name(name).map_err(|error| ApiError::bad_request(error.to_string()))
}

const BAD_LOGIN: &str = "invalid user name or password";

async fn login(State(service): State<AuthService>, ApiJson(request): ApiJson<LoginRequest>) -> Response {
    match login_inner(service, request).await {
        Ok(response) => ApiJson(response).into_response(),
        Err(LoginError::Api(error)) => error.into_response(),
        Err(LoginError::Wait(wait)) => {
            let seconds = wait.as_secs().max(1);
            let mut response = ApiError::new(
                ErrorCode::TooManyRequests,
                format!("too many failed logins for this user name; retry in {seconds} s"),
            )
            .into_response();
            response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
            response
        }
    }
}

enum LoginError {
    Api(ApiError),
    Wait(Duration),
}

impl From<ApiError> for LoginError {
    fn from(error: ApiError) -> Self {
        LoginError::Api(error)
    }
}

async fn login_inner(service: AuthService, request: LoginRequest) -> Result<LoginResponse, LoginError> {
    check_name(&request.name)?;
    if request.password.len() > dfs_proto::auth::MAX_PASSWORD_LEN {
        return Err(ApiError::bad_request("password is too long").into());
    }
    service
        .limiter
        .check(&request.name, Instant::now())
        .map_err(LoginError::Wait)?;
    let user = {
        let service = service.clone();
        let name = request.name.clone();
        let password = request.password.clone();
        blocking(move || {
            let user = service.store.user_by_name(&name).map_err(store_error)?;
            Ok(match user {
                Some(user) if password::verify(&user.password_hash, &password) => Some(user),
                Some(_) => None,
                None => {
                    password::verify_against_nothing(&password);
                    None
                }
            })
        })
        .await?
    };
    let Some(user) = user else {
        service.limiter.record_failure(&request.name, Instant::now());
        return Err(ApiError::unauthenticated(BAD_LOGIN).into());
    };
    service.limiter.record_success(&request.name);
    Ok(issue_ticket(&service, &user, None).await?)
}

/// Seals a ticket for `user`, in a new session or extending `sid`.
async fn issue_ticket(service: &AuthService, user: &UserRecord, sid: Option<String>) -> ApiResult<LoginResponse> {
    let now = dfs_seal::now();
    let expires_at = now + service.ticket_ttl.as_secs();
    let mut roles = vec![Role::User];
    if user.admin {
        roles.push(Role::Admin);
    }
    let ticket = Ticket {
        uid: user.uid,
        name: user.name.clone(),
        roles,
        sid: sid.clone().unwrap_or_else(dfs_seal::random_id),
        issued_at: now,
        expires_at,
    };
    {
        let service = service.clone();
        let session = SessionRecord {
            sid: ticket.sid.clone(),
            uid: user.uid,
            expires_at,
            revoked: false,
        };
        blocking(move || {
            match sid {
                Some(sid) => service.store.extend_session(&sid, expires_at),
                None => service.store.create_session(&session),
            }
            .map_err(|error| match error {
                StoreError::NotFound(_) => ApiError::unauthenticated("session revoked: run `dfs login`"),
                other => store_error(other),
            })
        })
        .await?;
    }
    Ok(LoginResponse {
        ticket: service.verifier.key().seal_ticket(&ticket),
        expires_at,
        user: user_info(user),
    })
}

async fn refresh(State(service): State<AuthService>, Caller(ticket): Caller) -> ApiResult<ApiJson<LoginResponse>> {
    if ticket.is_service() {
        return Err(ApiError::bad_request("service tickets are not refreshed"));
    }
    let user = {
        let service = service.clone();
        let name = ticket.name.clone();
        blocking(move || service.store.user_by_name(&name).map_err(store_error)).await?
    };
    // A user deleted (and perhaps re-created under the same name) loses its sessions.
    let user = user
        .filter(|user| user.uid == ticket.uid)
        .ok_or_else(|| ApiError::unauthenticated("user no longer exists"))?;
    Ok(ApiJson(issue_ticket(&service, &user, Some(ticket.sid)).await?))
}

async fn logout(State(service): State<AuthService>, Caller(ticket): Caller) -> ApiResult<StatusCode> {
    let sid = ticket.sid.clone();
    let store_service = service.clone();
    blocking(move || store_service.store.revoke_session(&sid).map_err(store_error)).await?;
    service.verifier.revoke([(ticket.sid, ticket.expires_at)]);
    Ok(StatusCode::NO_CONTENT)
}

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

async fn revoked(State(service): State<AuthService>, caller: Caller) -> ApiResult<ApiJson<RevokedSessions>> {
    caller.require_service()?;
    let sessions = blocking(move || service.store.revoked_sessions(dfs_seal::now()).map_err(store_error)).await?;
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

async fn list_users(State(service): State<AuthService>, caller: Caller) -> ApiResult<ApiJson<Vec<UserInfo>>> {
    caller.require_admin()?;
    let users = blocking(move || service.store.list_users().map_err(store_error)).await?;
    Ok(ApiJson(users.iter().map(user_info).collect()))
}

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
    let user = blocking(move || service.store.user_by_name(&name).map_err(store_error)).await?;
    user.map(|user| ApiJson(user_info(&user)))
        .ok_or_else(|| ApiError::not_found(format!("no such user: {shown}")))
}

async fn create_user(
    State(service): State<AuthService>,
    caller: Caller,
    ApiJson(request): ApiJson<CreateUserRequest>,
) -> ApiResult<(StatusCode, ApiJson<UserInfo>)> {
    caller.require_admin()?;
    check_name(&request.name)?;
    validate_password(&request.password).map_err(ApiError::bad_request)?;
    let user = {
        let service = service.clone();
        blocking(move || {
            let hash = password::hash(&request.password)?;
            service
                .store
                .create_user(&request.name, &hash, request.admin, dfs_seal::now())
                .map_err(|error| match error {
                    StoreError::AlreadyExists(_) => {
                        ApiError::already_exists(format!("user already exists: {}", request.name))
                    }
                    other => store_error(other),
                })
        })
        .await?
    };
    ensure_home(&service, &user).await;
    Ok((StatusCode::CREATED, ApiJson(user_info(&user))))
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
            other => store_error(other),
        })
    })
    .await?;
    tracing::info!(user = %user.name, uid = user.uid, "deleted user; its sessions are revoked");
    blocking(move || service.refresh_revocations().map_err(ApiError::from)).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn change_password(
    State(service): State<AuthService>,
    Caller(ticket): Caller,
    Path(name): Path<String>,
    ApiJson(request): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    check_name(&name)?;
    if !(ticket.is_admin() || ticket.name == name) {
        return Err(ApiError::permission_denied(
            "permission denied: only admin may change another user's password",
        ));
    }
    validate_password(&request.password).map_err(ApiError::bad_request)?;
    blocking(move || {
        let hash = password::hash(&request.password)?;
        service
            .store
            .set_password_hash(&name, &hash)
            .map_err(|error| match error {
                StoreError::NotFound(_) => ApiError::not_found(format!("no such user: {name}")),
                other => store_error(other),
            })
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
