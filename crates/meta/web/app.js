// The DFS web file manager: plain ES modules, no build step, no library.
// Every name from the server is put in the page as text (textContent), never
// as markup; the page's Content-Security-Policy allows scripts from this
// origin only, and no inline script or style.
import { ApiError, call, download, pathQuery, session, upload } from './api.js';

const main = document.getElementById('main');
const errorBox = document.getElementById('error');
const statusBox = document.getElementById('status');
const dialogBox = document.getElementById('dialog');
let refreshTimer = null;

// ---- Small helpers ----

/** An element: `on*` attributes become listeners, `false`/null ones are left out. */
function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'value') element.value = value;
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
}

function showError(error) {
  errorBox.textContent = error ? (error.message || String(error)) : '';
}

function say(text) {
  statusBox.textContent = text;
}

const nameOf = (path) => (path === '/' ? '/' : path.slice(path.lastIndexOf('/') + 1));
const parentOf = (path) => (path.lastIndexOf('/') <= 0 ? '/' : path.slice(0, path.lastIndexOf('/')));
const join = (dir, name) => (dir === '/' ? `/${name}` : `${dir}/${name}`);
const filesHash = (path) => `#/files${path === '/' ? '/' : path.split('/').map(encodeURIComponent).join('/')}`;

function pathFromHash(hash) {
  const rest = hash.slice('#/files'.length);
  if (!rest || rest === '/') return rest === '/' ? '/' : null;
  try {
    return rest.split('/').map(decodeURIComponent).join('/').replace(/\/+$/, '') || '/';
  } catch {
    return null;
  }
}

function bytes(count) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = count;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${count} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function modeText(kind, mode) {
  const bits = 'rwxrwxrwx';
  let text = kind === 'dir' ? 'd' : '-';
  for (let bit = 0; bit < 9; bit += 1) text += mode & (1 << (8 - bit)) ? bits[bit] : '-';
  return `${text} ${(mode & 0o7777).toString(8).padStart(3, '0')}`;
}

const when = (ms) => new Date(ms).toLocaleString();

/** Whether `error` ends the session (then the login page is shown). */
function sessionEnded(error) {
  if (error instanceof ApiError && error.status === 401) {
    session.clear();
    loginView(`Your session has ended: ${error.message}`);
    return true;
  }
  return false;
}

/** Runs `work`, showing its error; answers whether it succeeded. */
async function attempt(work) {
  showError(null);
  try {
    await work();
    return true;
  } catch (error) {
    if (!sessionEnded(error)) showError(error);
    return false;
  }
}

// ---- Dialogs ----

/**
 * A modal form. `fields`: {name, label, value, type, options}. Answers the
 * values by name, or null if cancelled (Escape or Cancel).
 */
function ask(title, fields, submitLabel, { danger = false, body = [] } = {}) {
  return new Promise((resolve) => {
    const inputs = fields.map((field) => {
      const id = `field-${field.name}`;
      const input = field.options
        ? h('select', { id, name: field.name }, field.options.map(([value, label]) => h('option', { value }, label)))
        : h('input', {
          id,
          name: field.name,
          type: field.type || 'text',
          value: field.value ?? '',
          required: field.required !== false && field.type !== 'checkbox',
          pattern: field.pattern,
          inputmode: field.inputmode,
          autocomplete: 'off',
        });
      if (field.options && field.value) input.value = field.value;
      return { field, input, label: h('label', { for: id }, field.label, input) };
    });
    let answered = false;
    const finish = (values) => {
      if (answered) return;
      answered = true;
      dialogBox.close();
      resolve(values);
    };
    const form = h('form', {
      method: 'dialog',
      onsubmit: (event) => {
        event.preventDefault();
        const values = {};
        for (const { field, input } of inputs) values[field.name] = field.type === 'checkbox' ? input.checked : input.value;
        finish(values);
      },
    },
    h('h2', { id: 'dialog-title' }, title),
    body,
    inputs.map(({ label }) => label),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', onclick: () => finish(null) }, 'Cancel'),
      h('button', { type: 'submit', class: danger ? 'primary danger' : 'primary' }, submitLabel)));
    dialogBox.replaceChildren(form);
    dialogBox.onclose = () => finish(null);
    dialogBox.showModal();
    (inputs[0]?.input ?? form.querySelector('button[type=submit]')).focus();
  });
}

// ---- Log in ----

function loginView(message = '') {
  stopRefresh();
  document.getElementById('nav').hidden = true;
  document.getElementById('logout').hidden = true;
  document.getElementById('who').textContent = '';
  const name = h('input', { id: 'login-name', name: 'name', autocomplete: 'username', required: true, autocapitalize: 'none' });
  const password = h('input', { id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const text = h('p', { class: 'message', id: 'login-message', role: 'alert' }, message);
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const form = h('form', {
    class: 'login',
    'aria-labelledby': 'login-title',
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      text.textContent = '';
      try {
        const login = await call('POST', '/v1/auth/login', { json: { name: name.value, password: password.value } });
        session.save(login);
        location.hash = filesHash(`/home/${login.user.name}`);
        route();
      } catch (error) {
        text.textContent = error.message;
        password.value = '';
        password.focus();
      } finally {
        submit.disabled = false;
      }
    },
  },
  h('h1', { id: 'login-title' }, 'Log in to DFS'),
  h('label', { for: 'login-name' }, 'User name', name),
  h('label', { for: 'login-password' }, 'Password', password),
  text,
  submit);
  document.title = 'Log in — DFS';
  show(form);
  name.focus();
}

async function logout() {
  try {
    await call('POST', '/v1/auth/logout');
  } catch {
    // The ticket is forgotten either way.
  }
  session.clear();
  location.hash = '';
  loginView('You are logged out.');
}

// ---- Files ----

function breadcrumbs(path) {
  const parts = path === '/' ? [] : path.slice(1).split('/');
  const items = [h('li', {}, h('a', { href: filesHash('/'), 'aria-current': parts.length === 0 ? 'page' : false }, 'Root'))];
  parts.forEach((part, index) => {
    const target = `/${parts.slice(0, index + 1).join('/')}`;
    const last = index === parts.length - 1;
    items.push(h('li', {}, h('a', { href: filesHash(target), 'aria-current': last ? 'page' : false }, part)));
  });
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('ol', {}, items));
}

const uploads = h('section', { class: 'uploads', 'aria-label': 'Uploads' });
let uploadQueue = Promise.resolve();

/** Queues uploads (one at a time): `items` are {path, file}; `dirs` are created first. */
function queueUploads(dirs, items, then) {
  const rows = items.map(({ path, file }) => {
    const bar = h('progress', { max: '100', value: '0', 'aria-label': `Upload of ${nameOf(path)}` });
    const percent = h('span', { class: 'percent' }, 'waiting');
    const row = h('div', { class: 'upload', 'data-path': path }, h('span', { class: 'mono' }, path), bar, percent);
    uploads.append(row);
    return { path, file, bar, percent, row };
  });
  uploadQueue = uploadQueue.then(async () => {
    for (const dir of dirs) {
      const ok = await attempt(() => call('POST', '/v1/mkdir', { json: { path: dir, parents: true } }));
      if (!ok) return;
    }
    for (const item of rows) {
      try {
        await upload(item.path, item.file, (sent, total) => {
          const value = total ? Math.floor((sent * 100) / total) : 100;
          item.bar.value = value;
          item.percent.textContent = `${value}%`;
        });
        item.percent.textContent = 'done';
        item.percent.className = 'percent done';
        say(`Uploaded ${item.path}`);
      } catch (error) {
        item.percent.textContent = 'failed';
        item.percent.className = 'percent failed';
        if (!sessionEnded(error)) showError(new Error(`${item.path}: ${error.message}`));
      }
      then();
    }
  });
}

/** Files and folders dropped: walks dropped folders (webkitGetAsEntry). */
async function droppedItems(dataTransfer, into) {
  const dirs = [];
  const files = [];
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (entries.length === 0) {
    for (const file of dataTransfer.files) files.push({ path: join(into, file.name), file });
    return { dirs, files };
  }
  const readAll = (reader) => new Promise((resolve, reject) => {
    const all = [];
    const next = () => reader.readEntries((batch) => {
      if (batch.length === 0) resolve(all);
      else {
        all.push(...batch);
        next();
      }
    }, reject);
    next();
  });
  const walk = async (entry, dir) => {
    const path = join(dir, entry.name);
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      files.push({ path, file });
    } else if (entry.isDirectory) {
      dirs.push(path);
      for (const child of await readAll(entry.createReader())) await walk(child, path);
    }
  };
  for (const entry of entries) await walk(entry, into);
  return { dirs, files };
}

/** Files chosen with a folder picker: their relative paths name the folders. */
function pickedItems(fileList, into) {
  const dirs = new Set();
  const files = [];
  for (const file of fileList) {
    const relative = file.webkitRelativePath || file.name;
    const path = join(into, relative);
    let dir = parentOf(path);
    while (dir !== into && dir !== '/' && !dirs.has(dir)) {
      dirs.add(dir);
      dir = parentOf(dir);
    }
    files.push({ path, file });
  }
  return { dirs: [...dirs].sort(), files };
}

/**
 * Entries asked for per listing page: 500, or `?page=N` in the address
 * (1 to 10,000). A folder of more shows a "Show more" button; no folder is
 * ever fetched whole.
 */
const LIST_PAGE = Math.min(Math.max(Number(new URLSearchParams(location.search).get('page')) || 500, 1), 10000);

function listPage(path, cursor) {
  const more = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
  return call('GET', `/v1/list${pathQuery(path)}&limit=${LIST_PAGE}${more}`);
}

async function filesView(path) {
  document.title = `${path} — DFS`;
  let listing;
  try {
    listing = await listPage(path);
  } catch (error) {
    if (sessionEnded(error)) return;
    show(
      breadcrumbs(path),
      h('h1', {}, path),
      h('p', { class: 'denied', role: 'alert', id: 'list-error' }, error.message),
      h('p', {}, h('a', { href: filesHash(`/home/${session.get().name}`) }, 'Back to your home folder')),
    );
    return;
  }
  const refresh = () => {
    if (location.hash === filesHash(path)) filesView(path);
  };
  const fileInput = h('input', {
    type: 'file', multiple: true, id: 'pick-files', 'aria-label': 'Upload files',
    onchange: () => {
      queueUploads([], [...fileInput.files].map((file) => ({ path: join(path, file.name), file })), refresh);
      fileInput.value = '';
    },
  });
  const folderInput = h('input', {
    type: 'file', multiple: true, webkitdirectory: true, id: 'pick-folder', 'aria-label': 'Upload a folder',
    onchange: () => {
      const { dirs, files } = pickedItems(folderInput.files, path);
      queueUploads(dirs, files, refresh);
      folderInput.value = '';
    },
  });
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': 'Folder actions' },
    h('button', { type: 'button', id: 'new-folder', onclick: () => newFolder(path, refresh) }, 'New folder'),
    h('span', { class: 'button filepick' }, 'Upload files', fileInput),
    h('span', { class: 'button filepick' }, 'Upload a folder', folderInput),
    h('button', { type: 'button', onclick: refresh }, 'Refresh'));

  const rows = listing.entries.map((entry) => entryRow(entry, refresh));
  let shown = listing.entries.length;
  let cursor = listing.next_cursor;
  const counted = () => `${shown} ${shown === 1 ? 'entry' : 'entries'}${cursor ? ' shown, more to come' : ''}. Drop files or folders here to upload them.`;
  const caption = h('caption', { class: 'drop-hint' }, counted());
  const body = h('tbody', {}, rows);
  const more = h('button', {
    type: 'button',
    id: 'more-entries',
    onclick: async () => {
      more.disabled = true;
      let next;
      const fetched = await attempt(async () => { next = await listPage(path, cursor); });
      more.disabled = false;
      if (!fetched) return;
      next.entries.forEach((entry) => body.append(entryRow(entry, refresh)));
      shown += next.entries.length;
      cursor = next.next_cursor;
      caption.textContent = counted();
      if (!cursor) more.remove();
    },
  }, 'Show more');
  const table = h('table', { id: 'listing' },
    caption,
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Name'),
      h('th', { scope: 'col', class: 'num' }, 'Size'),
      h('th', { scope: 'col', class: 'hide-narrow' }, 'Permissions'),
      h('th', { scope: 'col', class: 'hide-narrow' }, 'Owner'),
      h('th', { scope: 'col', class: 'hide-narrow' }, 'Modified'),
      h('th', { scope: 'col' }, 'Actions'))),
    body);
  const drop = h('div', {
    class: 'drop',
    id: 'drop',
    ondragover: (event) => {
      event.preventDefault();
      drop.classList.add('over');
    },
    ondragleave: () => drop.classList.remove('over'),
    ondrop: async (event) => {
      event.preventDefault();
      drop.classList.remove('over');
      const { dirs, files } = await droppedItems(event.dataTransfer, path);
      queueUploads(dirs, files, refresh);
    },
  }, table, cursor ? more : null);
  show(breadcrumbs(path), h('h1', {}, path), toolbar, uploads, drop);
}

function entryRow(entry, refresh) {
  const name = nameOf(entry.path);
  const isDir = entry.kind === 'dir';
  const label = isDir
    ? h('a', { href: filesHash(entry.path) }, `${name}/`)
    : h('button', { type: 'button', class: 'small linkish', onclick: () => details(entry, refresh), 'aria-label': `Details of ${name}` }, name);
  const act = (text, handler, extra = {}) => h('button', { type: 'button', class: 'small', 'aria-label': `${text} ${name}`, onclick: handler, ...extra }, text);
  return h('tr', { 'data-name': name, 'data-kind': entry.kind },
    h('td', { class: 'mono' }, label),
    h('td', { class: 'num' }, isDir ? '' : bytes(entry.size)),
    h('td', { class: 'mono hide-narrow' }, modeText(entry.kind, entry.mode)),
    h('td', { class: 'hide-narrow' }, entry.owner),
    h('td', { class: 'hide-narrow' }, when(entry.mtime_ms)),
    h('td', { class: 'actions' },
      isDir ? null : act('Download', () => save(entry)),
      act('Rename', () => rename(entry, refresh)),
      act('Permissions', () => chmod(entry, refresh)),
      act('Delete', () => remove(entry, refresh), { class: 'small danger' })));
}

async function newFolder(dir, refresh) {
  const values = await ask('New folder', [{ name: 'name', label: 'Folder name' }], 'Create');
  if (!values) return;
  if (await attempt(() => call('POST', '/v1/mkdir', { json: { path: join(dir, values.name) } }))) {
    say(`Created ${join(dir, values.name)}`);
    refresh();
  }
}

async function rename(entry, refresh) {
  const values = await ask(`Rename or move ${nameOf(entry.path)}`, [{ name: 'to', label: 'New path', value: entry.path }], 'Rename');
  if (!values || values.to === entry.path) return;
  if (await attempt(() => call('POST', '/v1/rename', { json: { from: entry.path, to: values.to } }))) {
    say(`Renamed ${entry.path} to ${values.to}`);
    refresh();
  }
}

async function chmod(entry, refresh) {
  const values = await ask(`Permissions of ${nameOf(entry.path)}`, [{
    name: 'mode', label: 'Mode (octal, e.g. 644: owner read-write, others read)', value: (entry.mode & 0o7777).toString(8), pattern: '[0-7]{3,4}', inputmode: 'numeric',
  }], 'Change');
  if (!values) return;
  if (await attempt(() => call('POST', '/v1/chmod', { json: { path: entry.path, mode: parseInt(values.mode, 8) } }))) {
    say(`Changed the mode of ${entry.path} to ${values.mode}`);
    refresh();
  }
}

async function remove(entry, refresh) {
  const what = entry.kind === 'dir' ? 'the folder and everything in it' : 'the file';
  const values = await ask(`Delete ${nameOf(entry.path)}?`, [], 'Delete', { danger: true, body: [h('p', {}, `This deletes ${what}: ${entry.path}`)] });
  if (!values) return;
  if (await attempt(() => call('POST', '/v1/remove', { json: { path: entry.path, recursive: entry.kind === 'dir' } }))) {
    say(`Deleted ${entry.path}`);
    refresh();
  }
}

async function save(entry) {
  const name = nameOf(entry.path);
  await attempt(async () => {
    const blob = await download(entry.path, (received, total) => {
      say(`Downloading ${name}: ${total ? Math.floor((received * 100) / total) : 0}%`);
    });
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    say(`Downloaded ${name}`);
  });
}

// ---- A file's details: version, replicas, locks ----

async function details(entry, refresh) {
  const name = nameOf(entry.path);
  const content = h('div', { id: 'details' }, h('p', {}, 'Loading…'));
  const close = h('button', { type: 'button', class: 'primary', onclick: () => dialogBox.close() }, 'Close');
  dialogBox.replaceChildren(h('div', {}, h('h2', { id: 'dialog-title' }, name), content, h('div', { class: 'buttons' }, close)));
  dialogBox.onclose = null;
  dialogBox.showModal();
  close.focus();
  const render = async () => {
    try {
      const [layout, locks] = await Promise.all([
        call('GET', `/v1/layout${pathQuery(entry.path)}`),
        call('GET', `/v1/locks${pathQuery(entry.path)}`),
      ]);
      content.replaceChildren(...detailsOf(layout, locks.locks, entry, render));
    } catch (error) {
      if (!sessionEnded(error)) content.replaceChildren(h('p', { role: 'alert' }, error.message));
    }
  };
  await render();
  refresh();
}

function detailsOf(layout, locks, entry, rerender) {
  const stat = layout.stat;
  const me = session.get().name;
  const facts = h('dl', {},
    h('dt', {}, 'Path'), h('dd', { class: 'mono' }, stat.path),
    h('dt', {}, 'Size'), h('dd', {}, `${bytes(stat.size)} (${stat.size} bytes)`),
    h('dt', {}, 'Version'), h('dd', { id: 'version' }, `${stat.version} (each committed write adds one; DFS keeps the current version only)`),
    h('dt', {}, 'Owner, permissions'), h('dd', {}, `${stat.owner}, ${modeText(stat.kind, stat.mode)}`),
    h('dt', {}, 'Modified'), h('dd', {}, when(stat.mtime_ms)));
  const storage = layout.inline
    ? h('p', { id: 'replicas' }, 'Stored inline in the metadata database (a small file): no chunks, no file servers.')
    : h('table', { id: 'replicas' },
      h('caption', {}, `${layout.chunks.length} chunks`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, '#'), h('th', { scope: 'col' }, 'Chunk'), h('th', { scope: 'col', class: 'num' }, 'Size'), h('th', { scope: 'col' }, 'Replicas'))),
      h('tbody', {}, layout.chunks.map((chunk, index) => h('tr', {},
        h('td', {}, index + 1),
        h('td', { class: 'mono' }, `${chunk.id.slice(0, 16)}…`),
        h('td', { class: 'num' }, bytes(chunk.size)),
        h('td', { class: 'mono' }, chunk.replicas.map((server) => server.id).join(', ') || 'none live')))));
  const lockRows = locks.map((lock) => h('li', {},
    `${lock.shared ? 'Shared' : 'Exclusive'} lock on ${lock.path} held by ${lock.holder}, until ${when(lock.expires_at * 1000)} `,
    lock.holder === me
      ? h('button', {
        type: 'button', class: 'small',
        onclick: async () => {
          if (await attempt(() => call('POST', '/v1/locks/release', { json: { path: lock.path, token: lock.token } }))) rerender();
        },
      }, 'Release')
      : null));
  const kind = h('select', { id: 'lock-kind' }, h('option', { value: 'exclusive' }, 'Exclusive'), h('option', { value: 'shared' }, 'Shared'));
  const ttl = h('input', { id: 'lock-ttl', type: 'number', min: '1', max: '3600', value: '300', inputmode: 'numeric' });
  const take = h('form', {
    class: 'toolbar',
    onsubmit: async (event) => {
      event.preventDefault();
      const request = { path: entry.path, shared: kind.value === 'shared', ttl_secs: Number(ttl.value) };
      if (await attempt(() => call('POST', '/v1/locks', { json: request }))) rerender();
    },
  },
  h('label', { for: 'lock-kind' }, 'Lock ', kind),
  h('label', { for: 'lock-ttl' }, 'for seconds ', ttl),
  h('button', { type: 'submit' }, 'Take lock'));
  return [
    facts,
    h('h3', {}, 'Replicas'), storage,
    h('h3', {}, 'Locks'),
    lockRows.length ? h('ul', { id: 'locks' }, lockRows) : h('p', { id: 'locks' }, 'No live locks.'),
    take,
  ];
}

// ---- The cluster ----

function stopRefresh() {
  if (refreshTimer) clearInterval(refreshTimer);
  refreshTimer = null;
}

/** `name value` samples of Prometheus text, by name (labels kept in the name). */
function samples(text) {
  const values = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return values;
}

async function clusterView() {
  document.title = 'Cluster — DFS';
  const card = (label, value, id) => h('div', { class: 'card' }, h('div', { class: 'value', id }, value), h('div', { class: 'label' }, label));
  // The counts of files, folders, chunks and replicas count whole tables:
  // asked for once a minute. Servers and under-replicated chunks (the
  // repair queue) every 3 seconds.
  let status;
  let counted = 0;
  const render = async () => {
    let metrics = {};
    try {
      if (!status || Date.now() - counted > 60_000) {
        status = await call('GET', '/v1/cluster/status');
        counted = Date.now();
      } else {
        const list = await call('GET', '/v1/cluster/servers');
        const replicas = new Map(status.servers.map((server) => [server.id, server.replica_count]));
        status = {
          ...status,
          under_replicated_chunks: list.under_replicated_chunks,
          servers: list.servers.map((server) => ({ ...server, replica_count: replicas.get(server.id) ?? 0 })),
        };
      }
      const response = await fetch('/metrics', { cache: 'no-store', credentials: 'omit' });
      if (response.ok) metrics = samples(await response.text());
    } catch (error) {
      if (!sessionEnded(error)) showError(error);
      return;
    }
    if (!location.hash.startsWith('#/cluster')) return;
    const live = status.servers.filter((server) => server.alive).length;
    const metric = (name) => (name in metrics ? metrics[name] : '—');
    show(
      h('h1', {}, 'Cluster'),
      h('section', { class: 'cards', 'aria-label': 'Summary' },
        card('File servers live', `${live} of ${status.servers.length}`, 'live-servers'),
        card('Replication factor', status.replication),
        card('Files', status.files),
        card('Folders', status.directories),
        card('Chunks', status.chunks),
        card('Under-replicated chunks', status.under_replicated_chunks, 'under-replicated'),
        card('Lost chunks (last repair pass)', metric('dfs_lost_chunks')),
        card('Repair copies queued', metric('dfs_repair_planned_copies')),
        card('Repair copies made', metric('dfs_repair_copies_total')),
        card('Repair copies failed', metric('dfs_repair_failures_total'))),
      h('table', { id: 'servers' },
        h('caption', {}, 'File servers (refreshed every 3 seconds; files, folders, chunks and replicas recorded every minute)'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'Server'),
          h('th', { scope: 'col' }, 'State'),
          h('th', { scope: 'col', class: 'hide-narrow' }, 'Last heard'),
          h('th', { scope: 'col' }, 'Used'),
          h('th', { scope: 'col', class: 'num hide-narrow' }, 'Chunks'),
          h('th', { scope: 'col', class: 'num hide-narrow' }, 'Replicas recorded'))),
        h('tbody', {}, status.servers.map((server) => h('tr', {},
          h('td', { class: 'mono' }, server.id, h('br'), server.url),
          h('td', { class: server.alive ? 'alive' : 'dead' }, server.alive ? (server.draining ? 'live, draining' : 'live') : 'dead'),
          h('td', { class: 'hide-narrow' }, `${server.last_seen_secs} s ago`),
          h('td', {},
            h('meter', { min: '0', max: String(server.capacity_bytes || 1), value: String(server.used_bytes), 'aria-label': `Space used on ${server.id}` }),
            ` ${bytes(server.used_bytes)} of ${bytes(server.capacity_bytes)}`),
          h('td', { class: 'num hide-narrow' }, server.chunk_count),
          h('td', { class: 'num hide-narrow' }, server.replica_count))))),
    );
  };
  await render();
  stopRefresh();
  refreshTimer = setInterval(render, 3000);
}

// ---- Routing ----

function route() {
  stopRefresh();
  showError(null);
  if (dialogBox.open) dialogBox.close();
  const current = session.get();
  if (!current) {
    loginView();
    return;
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('logout').hidden = false;
  document.getElementById('who').textContent = `${current.name}${current.admin ? ' (admin)' : ''}`;
  const hash = location.hash;
  const onCluster = hash.startsWith('#/cluster');
  document.getElementById('nav-files').setAttribute('aria-current', onCluster ? 'false' : 'page');
  document.getElementById('nav-cluster').setAttribute('aria-current', onCluster ? 'page' : 'false');
  if (onCluster) {
    clusterView();
    return;
  }
  const path = hash.startsWith('#/files') ? pathFromHash(hash) : null;
  if (!path) {
    location.replace(filesHash(`/home/${current.name}`));
    return;
  }
  filesView(path);
  main.focus();
}

document.getElementById('logout').addEventListener('click', logout);
document.getElementById('nav-files').addEventListener('click', (event) => {
  event.preventDefault();
  location.hash = filesHash(`/home/${session.get().name}`);
});
window.addEventListener('hashchange', route);
route();
