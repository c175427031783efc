// Calls to the DFS HTTP API, same origin: the directory service serves this
// page, the namespace routes, and forwards login and logout to the security
// service. The ticket lives in sessionStorage and travels only as an
// Authorization header (no cookies, so no cross-site request can carry it).

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const KEY = 'dfs.session';

export const session = {
  get() {
    try {
      return JSON.parse(sessionStorage.getItem(KEY));
    } catch {
      return null;
    }
  },
  save(login) {
    sessionStorage.setItem(KEY, JSON.stringify({
      ticket: login.ticket,
      name: login.user.name,
      admin: login.user.admin,
      expiresAt: login.expires_at,
    }));
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

/** Tickets are refreshed when less than this many seconds of them remain. */
const REFRESH_BEFORE = 15 * 60;
let refreshing = null;

/**
 * Refreshes the ticket (`POST /v1/auth/refresh`) once it is near its end, as
 * `dfs` does; a session past its absolute end is not extended, and the next
 * call's 401 shows the login page.
 */
async function refreshIfDue() {
  const current = session.get();
  if (!current || current.expiresAt - Date.now() / 1000 > REFRESH_BEFORE) return;
  refreshing ??= (async () => {
    try {
      const response = await fetch('/v1/auth/refresh', {
        method: 'POST',
        headers: { Authorization: `Bearer ${current.ticket}` },
        credentials: 'omit',
        cache: 'no-store',
      });
      if (response.ok) session.save(await response.json());
    } catch {
      // Kept as it is: the call itself will say what is wrong.
    } finally {
      refreshing = null;
    }
  })();
  await refreshing;
}

function authorization() {
  const current = session.get();
  return current ? { Authorization: `Bearer ${current.ticket}` } : {};
}

async function errorOf(response) {
  let code = 'error';
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    code = body.code ?? code;
    message = body.message ?? message;
  } catch {
    // Not JSON: keep the status line.
  }
  return new ApiError(response.status, code, message);
}

/** A JSON call; `json` is the request body. Answers the parsed body (null for 204). */
export async function call(method, url, { json, headers = {}, raw = false } = {}) {
  if (url !== '/v1/auth/login' && url !== '/v1/auth/logout') await refreshIfDue();
  const init = {
    method,
    headers: { ...authorization(), ...headers },
    credentials: 'omit',
    cache: 'no-store',
  };
  if (json !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  const response = await fetch(url, init);
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

/** `?path=P`, escaped. */
export function pathQuery(path) {
  return `?path=${encodeURIComponent(path)}`;
}

/**
 * Uploads `file` (a Blob) to `path` with `PUT /v1/files` (any size: the
 * directory service streams it into chunks). XMLHttpRequest rather than fetch:
 * only it reports upload progress. `onProgress(sent, total)`.
 */
export async function upload(path, file, onProgress) {
  await refreshIfDue();
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/v1/files${pathQuery(path)}`);
    const auth = authorization();
    if (auth.Authorization) xhr.setRequestHeader('Authorization', auth.Authorization);
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    xhr.upload.onprogress = (event) => onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onerror = () => reject(new ApiError(0, 'unreachable', 'the upload was interrupted (network error)'));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        // Not JSON.
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(file.size, file.size);
        resolve(body);
      } else {
        reject(new ApiError(xhr.status, body?.code ?? 'error', body?.message ?? `${xhr.status} ${xhr.statusText}`));
      }
    };
    xhr.send(file);
  });
}

/**
 * Downloads `path` with `GET /v1/files` into a Blob, reporting
 * `onProgress(received, total)`.
 */
export async function download(path, onProgress) {
  const response = await call('GET', `/v1/files${pathQuery(path)}`, { raw: true });
  const total = Number(response.headers.get('Content-Length')) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    received += value.length;
    onProgress(received, total);
  }
  if (total && received !== total) {
    throw new ApiError(0, 'truncated', `the download ended after ${received} of ${total} bytes`);
  }
  return new Blob(parts, { type: 'application/octet-stream' });
}
