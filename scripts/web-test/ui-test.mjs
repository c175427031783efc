// Browser test of the web file manager: headless Chromium driven by
// playwright-core, against a running cluster. Run by the e2e test
// `browser::the_web_file_manager_works_in_a_browser` (which starts the
// cluster and the users), or by hand:
//
//   DFS_WEB_URL=http://127.0.0.1:7070/ui/ DFS_USER=ann DFS_PASSWORD=... \
//   DFS_OTHER_HOME=/home/bob DFS_WEB_SHOTS=/tmp/shots \
//   DFS_PLAYWRIGHT=.cache/web-test/node_modules node scripts/web-test/ui-test.mjs
//
// Every check that fails throws: the exit status is non-zero. A screenshot
// of each page is saved in DFS_WEB_SHOTS.
import { createRequire } from 'node:module';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (value === undefined) throw new Error(`${name} is not set`);
  return value;
};
const url = env('DFS_WEB_URL');
const user = env('DFS_USER');
const password = env('DFS_PASSWORD');
const otherHome = env('DFS_OTHER_HOME');
const shots = resolve(env('DFS_WEB_SHOTS'));
const modules = resolve(env('DFS_PLAYWRIGHT'));
const chromium = env('DFS_CHROMIUM', '/usr/bin/chromium');
const { chromium: launcher } = createRequire(join(modules, 'playwright-core', 'package.json'))('playwright-core');

mkdirSync(shots, { recursive: true });
const work = mkdtempSync(join(tmpdir(), 'dfs-web-test-'));
const home = `/home/${user}`;
const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const browser = await launcher.launch({ executablePath: chromium, args: ['--no-sandbox'] });
const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
const pageErrors = [];
page.on('pageerror', (error) => pageErrors.push(String(error)));
page.on('console', (message) => {
  // Chromium logs every error answer ("Failed to load resource: ... 403"); those are expected here.
  if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) pageErrors.push(message.text());
});
const shot = async (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
const row = (name) => page.locator(`#listing tr[data-name="${name}"]`);

try {
  // Log in: a wrong password first.
  await page.goto(url);
  await page.getByLabel('User name').waitFor();
  await shot('01-login');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.locator('#login-message').filter({ hasText: /\S/ }).waitFor();
  const refused = await page.locator('#login-message').textContent();
  check(/password/i.test(refused), `a wrong password is refused on the page ("${refused}")`);
  await shot('02-login-refused');
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('heading', { name: home, exact: true }).waitFor();
  check(true, `logged in, ${home} listed`);
  const ticketAtLogin = await page.evaluate(() => JSON.parse(sessionStorage.getItem('dfs.session')).ticket);
  const crumbs = await page.locator('nav.crumbs a').allTextContents();
  check(crumbs.join('/') === `Root/home/${user}`, `breadcrumbs ${crumbs.join(' / ')}`);

  // Upload 20 MiB with the file picker; the progress bar ends at 100 %.
  const big = randomBytes(20 * 1024 * 1024);
  const bigPath = join(work, 'big.bin');
  writeFileSync(bigPath, big);
  const seen = new Set();
  await page.setInputFiles('#pick-files', bigPath);
  const bar = page.getByRole('progressbar', { name: 'Upload of big.bin' });
  await bar.waitFor();
  await shot('03-uploading');
  for (let tries = 0; tries < 600; tries += 1) {
    const value = await bar.evaluate((element) => element.value);
    seen.add(value);
    if (value >= 100 && (await page.locator('.upload[data-path$="/big.bin"] .percent').textContent()) === 'done') break;
    await page.waitForTimeout(50);
  }
  check((await bar.evaluate((element) => element.value)) === 100, `the progress bar reached 100 (values seen: ${[...seen].join(', ')})`);
  check((await page.locator('.upload[data-path$="/big.bin"] .percent').textContent()) === 'done', 'the upload says done');
  await row('big.bin').waitFor();
  const size = await row('big.bin').locator('td').nth(1).textContent();
  check(size === '20.0 MiB', `big.bin is listed with its size (${size})`);
  await shot('04-listed');

  // A folder with the folder picker (its tree is created), and a file dropped on the listing.
  const album = join(work, 'album');
  mkdirSync(join(album, 'inner'), { recursive: true });
  writeFileSync(join(album, 'a.txt'), 'first');
  writeFileSync(join(album, 'inner', 'b.txt'), 'second');
  await page.setInputFiles('#pick-folder', album);
  await page.locator('.upload[data-path$="/album/inner/b.txt"] .percent', { hasText: 'done' }).waitFor();
  await row('album').waitFor();
  check(true, 'a folder uploaded with the folder picker');
  await page.evaluate(() => {
    const transfer = new DataTransfer();
    transfer.items.add(new File(['dropped bytes'], 'dropped.txt'));
    document.getElementById('drop').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  });
  await row('dropped.txt').waitFor();
  check(true, 'a file dropped on the listing is uploaded');

  // A listing comes a page at a time (here 2 entries a page).
  const listed = page.url();
  const total = await page.locator('#listing tbody tr').count();
  check(total >= 3, `${total} entries listed in one page of 500`);
  await page.goto(listed.replace('/ui/', '/ui/?page=2'));
  await page.getByRole('heading', { name: home, exact: true }).waitFor();
  check((await page.locator('#listing tbody tr').count()) === 2, 'the first page of a listing shows 2 entries');
  check(/2 entries shown, more to come/.test(await page.locator('#listing caption').textContent()), 'the caption says more are to come');
  for (let pages = 1; (await page.getByRole('button', { name: 'Show more' }).count()) > 0; pages += 1) {
    check(pages < total, 'pages end');
    const before = await page.locator('#listing tbody tr').count();
    await page.getByRole('button', { name: 'Show more' }).click();
    await page.waitForFunction((count) => document.querySelectorAll('#listing tbody tr').length > count, before);
  }
  const names = await page.locator('#listing tbody tr').evaluateAll((rows) => rows.map((tr) => tr.dataset.name));
  check(names.length === total && new Set(names).size === total, `Show more appends each next page: ${names.join(', ')}`);
  await shot('04b-paged-listing');
  await page.goto(listed);
  await page.getByRole('heading', { name: home, exact: true }).waitFor();

  // Download it and compare.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: 'Download big.bin' }).click(),
  ]);
  const downloaded = join(work, 'downloaded.bin');
  await download.saveAs(downloaded);
  check(sha256(readFileSync(downloaded)) === sha256(big), 'the download is byte for byte the upload');

  // Details: version, chunks and their replicas; take and release a lock.
  await page.getByRole('button', { name: 'Details of big.bin' }).click();
  await page.locator('#replicas tbody tr').first().waitFor();
  const chunks = await page.locator('#replicas tbody tr').count();
  check(chunks === 3, `the details list 3 chunks (${chunks})`);
  const replicas = await page.locator('#replicas tbody tr td:nth-child(4)').first().textContent();
  check(replicas.split(',').length === 3, `a chunk has 3 replicas (${replicas})`);
  await page.getByRole('button', { name: 'Take lock' }).click();
  await page.locator('#locks li').first().waitFor();
  const lock = await page.locator('#locks li').first().textContent();
  check(lock.includes(`held by ${user}`), `a lock is taken (${lock.trim()})`);
  await shot('05-details');
  await page.locator('#locks').getByRole('button', { name: 'Release' }).click();
  await page.locator('p#locks', { hasText: 'No live locks.' }).waitFor();
  check(true, 'the lock is released');
  await page.getByRole('button', { name: 'Close' }).click();

  // A folder, a move into it (rename to another path), permissions, delete.
  await page.getByRole('button', { name: 'New folder' }).click();
  await page.getByLabel('Folder name').fill('docs');
  await page.getByRole('button', { name: 'Create' }).click();
  await row('docs').waitFor();
  check(true, 'folder docs created');
  await page.getByRole('button', { name: 'Rename big.bin' }).click();
  await page.getByLabel('New path').fill(`${home}/docs/moved.bin`);
  await page.getByRole('button', { name: 'Rename', exact: true }).click();
  await row('big.bin').waitFor({ state: 'detached' });
  await row('docs').getByRole('link').click();
  await row('moved.bin').waitFor();
  check(true, 'big.bin renamed and moved to docs/moved.bin');
  await page.getByRole('button', { name: 'Permissions moved.bin' }).click();
  await page.getByLabel(/Mode/).fill('600');
  await page.getByRole('button', { name: 'Change' }).click();
  await row('moved.bin').locator('td', { hasText: '-rw------- 600' }).waitFor();
  check(true, 'mode changed to 600');
  await shot('06-folder');
  await page.getByRole('button', { name: 'Delete moved.bin' }).click();
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await row('moved.bin').waitFor({ state: 'detached' });
  check(true, 'moved.bin deleted');

  // The cluster page.
  await page.getByRole('link', { name: 'Cluster' }).click();
  await page.locator('#servers tbody tr').first().waitFor();
  const live = await page.locator('#live-servers').textContent();
  check(/^\d+ of \d+$/.test(live) && live.split(' of ')[0] === live.split(' of ')[1], `every file server is live (${live})`);
  const perServer = await page.locator('#servers tbody tr td:last-child').allTextContents();
  check(perServer.some((count) => Number(count) > 0), `replicas recorded per server (${perServer})`);
  // Refreshed every 3 s from the server list (the counts once a minute): the same servers, the counts kept.
  const asked = [];
  const listen = (request) => asked.push(new URL(request.url()).pathname);
  page.on('request', listen);
  await page.waitForTimeout(3500);
  page.off('request', listen);
  check(asked.includes('/v1/cluster/servers') && !asked.includes('/v1/cluster/status'), `the refresh asks for the server list only (${asked})`);
  check((await page.locator('#live-servers').textContent()) === live, 'still every file server live');
  check(
    JSON.stringify(await page.locator('#servers tbody tr td:last-child').allTextContents()) === JSON.stringify(perServer),
    'replica counts kept across the refresh',
  );
  check((await page.locator('#under-replicated').textContent()) === '0', 'no chunk under-replicated');
  await shot('07-cluster');

  // Another user's private folder cannot be opened.
  await page.goto(`${url}#/files${otherHome}`);
  await page.locator('#list-error').waitFor();
  const denied = await page.locator('#list-error').textContent();
  check(/permission denied/i.test(denied), `${otherHome} is refused ("${denied}")`);
  await shot('08-denied');

  // A phone-sized window: nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${url}#/files${home}`);
  await page.getByRole('heading', { name: home, exact: true }).waitFor();
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= 392, `the page fits a 390 px wide screen (${width} px)`);
  await shot('09-phone');

  // Keyboard: a page change puts the focus on the content, whose first stop is the breadcrumbs;
  // every control has a name a screen reader can say.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement?.textContent);
  check(focused === 'Root', `Tab after a page change reaches the breadcrumbs ("${focused}")`);
  const unnamed = await page.evaluate(() => [...document.querySelectorAll('a, button, input, select')]
    .filter((element) => !element.hidden && !(element.getAttribute('aria-label') || element.textContent.trim() || element.labels?.length))
    .map((element) => element.outerHTML));
  check(unnamed.length === 0, `every control has a name (${unnamed.join(' ')})`);

  if (process.env.DFS_EXPECT_REFRESH === '1') {
    const ticketNow = await page.evaluate(() => JSON.parse(sessionStorage.getItem('dfs.session')).ticket);
    check(ticketNow !== ticketAtLogin, 'the ticket, near its end, was refreshed');
  }

  // Log out.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByLabel('User name').waitFor();
  check(true, 'logged out');
  check(pageErrors.length === 0, `no script errors (${pageErrors.join('; ')})`);
} catch (error) {
  await shot('failure').catch(() => {});
  console.error(String(error?.stack ?? error));
  process.exitCode = 1;
} finally {
  await browser.close();
}
