// Drives Debian's chromium through the self-service page's security part
// as a user would: sign in with the password, try to add a device before
// an authenticator is set up (refused: the policy requires one), set up
// the authenticator from the key the page shows (the code computed here as
// an authenticator app computes it), add a device from a certificate
// request, download its certificate, see it listed, revoke it, get a
// PKCS#12 bundle for another device, sign out,
// sign in again with password and code, and sign out everywhere. Run by
// crates/parapet/tests/e2e/devices.rs, which checks the server's side.
//
// Environment: PAGE_URL, PAGE_USER, PAGE_PASSWORD, PAGE_CSR (a PEM request
// file), PAGE_DOWNLOAD (where to save the certificate), PAGE_BUNDLE (where
// to save the PKCS#12 bundle), PAGE_CERT (the server certificate, PEM),
// PAGE_SHOT (a screenshot path).
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { launch } from './launch.mjs';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const url = env('PAGE_URL');
const user = env('PAGE_USER');

// RFC 6238: HMAC-SHA1 over the 30-second step, 6 digits.
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/[\s=]/g, '').toUpperCase()) {
    const v = alphabet.indexOf(c);
    if (v < 0) throw new Error(`not base32: ${c}`);
    bits += v.toString(2).padStart(5, '0');
  }
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}
function totp(key, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0x0f;
  const bin = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(bin % 1000000).padStart(6, '0');
}
const step = () => Math.floor(Date.now() / 1000 / 30);

const browser = await launch(env('PAGE_CERT'));

function check(ok, what) {
  if (!ok) throw new Error(`page check failed: ${what}`);
  console.log(`ok: ${what}`);
}

const context = await browser.newContext({ acceptDownloads: true });
const page = await context.newPage();
const errors = [];
// Refusals this walk-through causes on purpose: the device added before
// the authenticator (403), and the sign-in that asks for the code (401).
const expected = [
  ['POST', '/user/v1/devices', 403],
  ['POST', '/user/v1/session', 401],
];
page.on('pageerror', (e) => errors.push(String(e)));
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
});
page.on('response', (r) => {
  if (r.status() < 400) return;
  const path = new URL(r.url()).pathname;
  const i = expected.findIndex(([m, p, s]) => m === r.request().method() && p === path && s === r.status());
  if (i >= 0) expected.splice(i, 1);
  else errors.push(`${r.status()} for ${r.request().method()} ${r.url()}`);
});
const status = page.locator('#status');
const expectStatus = async (text) => {
  await status.filter({ hasText: text }).waitFor({ timeout: 10000 });
  check(true, `status says "${text}"`);
};
const signIn = async () => {
  await page.fill('#user', user);
  await page.fill('#password', env('PAGE_PASSWORD'));
  await page.click('#sign-in button[type=submit]');
};

try {
  await page.goto(url);
  await signIn();
  await expectStatus('Signed in as');
  await page.locator('#factor-state', { hasText: 'requires an authenticator app' }).waitFor();
  check(true, 'the page says the policy requires an authenticator');

  const csr = readFileSync(env('PAGE_CSR'), 'utf8');
  await page.fill('#device-name', 'Alice laptop');
  await page.fill('#device-csr', csr);
  await page.click('#add-device button[type=submit]');
  await expectStatus('set up an authenticator app first');

  await page.click('#factor-start');
  await page.locator('#factor-qr svg').waitFor();
  check(true, 'a QR code is shown');
  const key = base32(await page.textContent('#factor-secret'));
  check(key.length === 20, 'the key is shown as text (160 bits)');
  const confirmStep = step();
  await page.fill('#factor-code', totp(key, confirmStep));
  await page.click('#factor-confirm button[type=submit]');
  await expectStatus('Authenticator app set up');
  await page.locator('#factor-state', { hasText: 'this session was signed in with it' }).waitFor();

  await page.fill('#device-name', 'Alice laptop');
  await page.fill('#device-csr', csr);
  await page.click('#add-device button[type=submit]');
  await expectStatus('Certificate issued for Alice laptop');
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.click('#device-download'),
  ]);
  await download.saveAs(env('PAGE_DOWNLOAD'));
  const pem = readFileSync(env('PAGE_DOWNLOAD'), 'utf8');
  check(pem.startsWith('-----BEGIN CERTIFICATE-----'), `the download is the certificate (${download.suggestedFilename()})`);
  const row = page.locator('#devices tbody tr', { hasText: 'Alice laptop' });
  await row.waitFor();
  check((await row.locator('td').nth(5).textContent()) === 'active', 'the device is listed as active');
  await page.screenshot({ path: env('PAGE_SHOT'), fullPage: true });

  await row.getByRole('button', { name: 'Revoke' }).click();
  await expectStatus('Alice laptop revoked');
  await row.locator('td', { hasText: 'revoked (user)' }).waitFor();
  check(true, 'the device is listed as revoked by its user');

  await page.fill('#bundle-name', 'Alice phone');
  await page.click('#add-bundle button[type=submit]');
  await expectStatus('Bundle made for Alice phone');
  const passphrase = await page.textContent('#bundle-passphrase');
  check(passphrase.length === 20, 'the passphrase is shown');
  const [bundle] = await Promise.all([
    page.waitForEvent('download'),
    page.click('#bundle-download'),
  ]);
  await bundle.saveAs(env('PAGE_BUNDLE'));
  console.log(`passphrase: ${passphrase}`);
  check(readFileSync(env('PAGE_BUNDLE')).length > 500, `the bundle is downloaded (${bundle.suggestedFilename()})`);

  await page.click('#sign-out');
  await expectStatus('Signed out');
  await signIn();
  await expectStatus('give the 6-digit code');
  check(await page.locator('#code-label').isVisible(), 'the page asks for the code');
  await page.fill('#totp', totp(key, Math.max(step(), confirmStep + 1)));
  await page.click('#sign-in button[type=submit]');
  await expectStatus('Signed in as');

  await page.click('#sign-out-everywhere');
  await expectStatus('Signed out everywhere');
  check(await page.locator('#signed-in-view').isHidden(), 'signed out');
  check(expected.length === 0, `the refusals expected happened (${JSON.stringify(expected)} left)`);
  check(errors.length === 0, `no script errors and no other failed requests (${errors.join('; ')})`);
} finally {
  await browser.close();
}
