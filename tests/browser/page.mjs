// Drives Debian's chromium through Parapet's self-service page as a user
// would: sign in (a wrong password first), approve a pending watcher,
// create a group, add a contact into it, change a relationship, remove a
// contact, sign out. Asserts what the page shows at each step. Run by
// crates/parapet/tests/e2e/page.rs, which checks the effects on the server.
//
// Environment: PAGE_URL, PAGE_USER, PAGE_PASSWORD, PAGE_WATCHER (pending),
// PAGE_CONTACT (to add), PAGE_CERT (the server certificate, PEM: its key is
// the one chromium is told to accept), PAGE_SHOT (a screenshot path).
import { launch } from './launch.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = env('PAGE_URL');
const user = env('PAGE_USER');
const watcher = env('PAGE_WATCHER');
const contact = env('PAGE_CONTACT');

const browser = await launch(env('PAGE_CERT'));

function check(ok, what) {
  if (!ok) throw new Error(`page check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const page = await browser.newPage();
const errors = [];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => {
  // Failed requests are checked below, by status.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
});
// Every request the page makes succeeds, but the one wrong password.
page.on('response', (r) => {
  const expected = r.status() === 401 && new URL(r.url()).pathname === '/user/v1/session';
  if (r.status() >= 400 && !expected) errors.push(`${r.status()} for ${r.request().method()} ${r.url()}`);
});
const status = page.locator('#status');
const expectStatus = async (text) => {
  await status.filter({ hasText: text }).waitFor({ timeout: 10000 });
  check(true, `status says "${text}"`);
};

try {
  await page.goto(url);
  await page.locator('#sign-in').waitFor();
  check(await page.locator('#signed-in-view').isHidden(), 'signed out at first');

  await page.fill('#user', user);
  await page.fill('#password', 'not the password');
  await page.click('#sign-in button[type=submit]');
  await expectStatus('address or password is wrong');
  check(await page.locator('#signed-in-view').isHidden(), 'a wrong password does not sign in');

  await page.fill('#password', env('PAGE_PASSWORD'));
  await page.click('#sign-in button[type=submit]');
  await expectStatus('Signed in as');
  check((await page.textContent('#me')).includes(user), 'the header names the user');
  // Linphone's set-up: the configuration address and its QR code (an
  // image the server drew, loaded).
  check(
    (await page.textContent('#provisioning-url')) === new URL(url).origin + '/provisioning',
    'the page shows the configuration address',
  );
  check(
    await page.locator('#provisioning-qr').evaluate((img) => img.complete && img.naturalWidth >= 200),
    'the configuration QR code is shown',
  );

  const wrow = page.locator(`#watchers tr[data-watcher="${watcher}"]`);
  await wrow.waitFor();
  check((await wrow.locator('td').nth(1).textContent()) === 'pending', 'the watcher is pending');
  await wrow.getByRole('button', { name: 'Approve' }).click();
  await expectStatus('may now see your presence');
  // The page polls every 3 s; on a loaded 2-core machine (the suite runs
  // two tests at once) a poll can take long: a minute, as the watcher has.
  await wrow.locator('td', { hasText: 'active' }).waitFor({ timeout: 60000 });
  check(true, 'the watcher is active after approval');
  const crow = page.locator(`#contacts tr[data-contact="${watcher}"]`);
  await crow.waitFor();
  check((await crow.locator('select').inputValue()) === 'colleague', 'the approved watcher is a colleague contact');

  await page.fill('#new-group-name', 'Team');
  await page.click('#add-group button[type=submit]');
  await expectStatus('group Team created');
  await page.locator('#groups li', { hasText: 'Team' }).waitFor();

  await page.fill('#new-contact', contact);
  await page.fill('#new-name', 'Bob <b>B.</b>');
  await page.selectOption('#new-relationship', 'workgroup');
  await page.selectOption('#new-group', 'Team');
  await page.click('#add-contact button[type=submit]');
  await expectStatus(`${contact} added`);
  const brow = page.locator(`#contacts tr[data-contact="${contact}"]`);
  await brow.waitFor();
  check((await brow.locator('td').nth(1).textContent()) === 'Bob <b>B.</b>', 'a name is shown as text, not markup');
  check((await brow.locator('td').nth(3).textContent()) === 'Team', 'the contact is in the group');
  check((await brow.locator('select').inputValue()) === 'workgroup', 'the contact is workgroup');

  await brow.locator('select').selectOption('personal');
  await expectStatus(`${contact} is now personal`);

  await crow.getByRole('button', { name: 'Remove' }).click();
  await expectStatus(`${watcher} removed`);
  await crow.waitFor({ state: 'detached' });
  check(true, 'the removed contact is gone from the table');

  await page.screenshot({ path: env('PAGE_SHOT'), fullPage: true });

  await page.click('#sign-out');
  await expectStatus('Signed out');
  await page.reload();
  await page.locator('#sign-in').waitFor();
  check(await page.locator('#signed-in-view').isHidden(), 'still signed out after a reload');
  check(errors.length === 0, `no script errors and no failed requests (${errors.join('; ')})`);
} finally {
  await browser.close();
}
