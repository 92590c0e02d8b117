// Parapet self-service page: talks to the user API on this origin only.
// Every value from the server is shown with textContent, never as HTML.
'use strict';

const TOKEN = 'parapet-user-token';
const LEVELS = ['external', 'colleague', 'workgroup', 'personal', 'blocked'];

const $ = (id) => document.getElementById(id);

function status(text, kind) {
  const s = $('status');
  s.textContent = text;
  s.className = kind || '';
}

class ApiError extends Error {
  constructor(code, detail, data) {
    super(detail);
    this.code = code;
    this.data = data || {};
  }
}

async function api(method, path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN);
  if (token) headers.Authorization = 'Bearer ' + token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'omit',
    cache: 'no-store',
  });
  if (r.status === 204) return null;
  let data = null;
  try {
    data = await r.json();
  } catch (_) {
    data = null;
  }
  if (!r.ok) {
    const detail = data && data.detail ? data.detail : r.status + ' ' + r.statusText;
    if (r.status === 401 && path !== '/user/v1/session') {
      sessionStorage.removeItem(TOKEN);
      show(false);
    }
    throw new ApiError(r.status, detail, data);
  }
  return data;
}

const enc = encodeURIComponent;

function cell(row, text) {
  const td = document.createElement('td');
  if (text !== undefined) td.textContent = text;
  row.appendChild(td);
  return td;
}

function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

// Runs a change, then shows `done` and the list as it is now.
async function change(work, done) {
  try {
    await work();
    status(done, 'ok');
  } catch (e) {
    status(e.message, 'error');
  }
  await refresh();
}

// The watchers as last shown, so that polling redraws only on a change.
let shownWatchers = '';
let poller = null;

function renderWatchers(watchers) {
  shownWatchers = JSON.stringify(watchers);
  const body = $('watchers').querySelector('tbody');
  body.replaceChildren();
  $('no-watchers').hidden = watchers.length > 0;
  $('watchers').hidden = watchers.length === 0;
  for (const w of watchers) {
    const tr = document.createElement('tr');
    tr.dataset.watcher = w.watcher;
    cell(tr, w.watcher);
    const st = cell(tr, w.status);
    if (w.status === 'pending') st.className = 'pending';
    const actions = cell(tr);
    if (w.status !== 'active') {
      actions.appendChild(button('Approve', () => change(
        () => api('PUT', '/user/v1/watchers/' + enc(w.watcher), { decision: 'approve' }),
        w.watcher + ' may now see your presence')));
    }
    if (w.status !== 'rejected') {
      actions.appendChild(button('Deny', () => change(
        () => api('PUT', '/user/v1/watchers/' + enc(w.watcher), { decision: 'deny' }),
        w.watcher + ' is blocked')));
    }
    body.appendChild(tr);
  }
}

function renderContacts(contacts) {
  const body = $('contacts').querySelector('tbody');
  body.replaceChildren();
  $('no-contacts').hidden = contacts.length > 0;
  $('contacts').hidden = contacts.length === 0;
  for (const c of contacts) {
    const tr = document.createElement('tr');
    tr.dataset.contact = c.contact;
    cell(tr, c.contact);
    cell(tr, c.display_name || '');
    const sel = document.createElement('select');
    sel.setAttribute('aria-label', 'Relationship with ' + c.contact);
    for (const l of LEVELS) {
      const o = document.createElement('option');
      o.value = l;
      o.textContent = l;
      o.selected = l === c.relationship;
      sel.appendChild(o);
    }
    sel.addEventListener('change', () => change(
      () => api('PUT', '/user/v1/contacts/' + enc(c.contact), {
        relationship: sel.value, display_name: c.display_name, groups: c.groups,
      }),
      c.contact + ' is now ' + sel.value));
    cell(tr).appendChild(sel);
    cell(tr, c.groups.join(', '));
    cell(tr).appendChild(button('Remove', () => change(
      () => api('DELETE', '/user/v1/contacts/' + enc(c.contact)),
      c.contact + ' removed')));
    body.appendChild(tr);
  }
}

function renderGroups(groups) {
  const list = $('groups');
  list.replaceChildren();
  const pick = $('new-group');
  pick.replaceChildren();
  const none = document.createElement('option');
  none.value = '';
  none.textContent = 'none';
  pick.appendChild(none);
  for (const g of groups) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = g + ' ';
    li.appendChild(name);
    li.appendChild(button('Remove', () => change(
      () => api('DELETE', '/user/v1/contact-groups/' + enc(g)),
      'group ' + g + ' removed (its contacts stay)')));
    list.appendChild(li);
    const o = document.createElement('option');
    o.value = g;
    o.textContent = g;
    pick.appendChild(o);
  }
}

const when = (secs) => (secs ? new Date(secs * 1000).toISOString().slice(0, 16).replace('T', ' ') + ' UTC' : '');

function renderFactor(f) {
  $('factor-state').textContent = f.enrolled
    ? 'Your authenticator app is set up' + (f.this_session ? ', and this session was signed in with it.' : '; sign in with its code to add a device.')
    : (f.required
      ? 'Your organisation requires an authenticator app before you add a device. Set one up below.'
      : 'Optional: an authenticator app protects your account and your devices.');
  $('factor-start').textContent = f.enrolled ? 'Replace the authenticator app' : 'Set up an authenticator app';
}

function renderDevices(devices) {
  const body = $('devices').querySelector('tbody');
  body.replaceChildren();
  $('no-devices').hidden = devices.length > 0;
  $('devices').hidden = devices.length === 0;
  for (const d of devices) {
    const tr = document.createElement('tr');
    tr.dataset.device = d.id;
    cell(tr, d.name);
    cell(tr, when(d.issued_at));
    cell(tr, when(d.expires_at));
    cell(tr, when(d.last_seen));
    cell(tr, d.user_agent || '');
    const st = cell(tr, d.revoked_at ? 'revoked (' + d.revoked_reason + ')' : 'active');
    if (d.revoked_at) tr.className = 'revoked';
    else st.className = 'ok';
    const actions = cell(tr);
    if (!d.revoked_at) {
      actions.appendChild(button('Revoke', () => change(
        () => api('DELETE', '/user/v1/devices/' + enc(d.id)),
        d.name + ' revoked: it is disconnected and cannot sign in again')));
    }
    body.appendChild(tr);
  }
}

// The QR code is an SVG document from this server; it is parsed as SVG
// (never as HTML) and its nodes imported.
function showQr(svgText) {
  const doc = new DOMParser().parseFromString(svgText, 'image/svg+xml');
  const box = $('factor-qr');
  box.replaceChildren();
  if (doc.documentElement && doc.documentElement.nodeName === 'svg') {
    box.appendChild(document.importNode(doc.documentElement, true));
  }
}

let downloadUrl = null;
let bundleUrl = null;

function showCertificate(pem, name) {
  $('device-pem').textContent = pem;
  if (downloadUrl) URL.revokeObjectURL(downloadUrl);
  downloadUrl = URL.createObjectURL(new Blob([pem], { type: 'application/x-pem-file' }));
  const a = $('device-download');
  a.href = downloadUrl;
  a.download = name.replace(/[^A-Za-z0-9._-]+/g, '-') + '.pem';
  $('device-issued').hidden = false;
}

// New watchers appear without a reload: the list is asked for every few
// seconds while signed in (a user's request rate allows far more).
async function pollWatchers() {
  try {
    const w = await api('GET', '/user/v1/watchers');
    if (JSON.stringify(w.watchers) !== shownWatchers) renderWatchers(w.watchers);
  } catch (e) {
    if (e.code !== 401) status(e.message, 'error');
  }
}

// Whether the organisation archives this user's instant messages.
function renderArchiving(a) {
  const which = [];
  if (a.internal) which.push('with people in your organisation');
  if (a.external) which.push('with people in other organisations');
  $('archiving').hidden = false;
  $('archiving').textContent = which.length
    ? 'Your instant messages ' + which.join(' and ') + ' are archived by your organisation and kept ' + a.retention_days + ' days.'
    : 'Your instant messages are not archived.';
  $('archiving').textContent += ' Records of your calls, conversations, files and sign-ins (who, when, how long; never what was said) are kept at least ' +
    a.usage_retention_days + ' days.';
}

async function refresh() {
  try {
    const list = await api('GET', '/user/v1/contacts');
    $('me').textContent = list.user;
    renderWatchers(list.watchers);
    renderContacts(list.contacts);
    renderGroups(list.groups);
    renderArchiving((await api('GET', '/user/v1/me')).archiving);
    renderFactor(await api('GET', '/user/v1/second-factor'));
    renderDevices(await api('GET', '/user/v1/devices'));
  } catch (e) {
    if (e.code !== 401) status(e.message, 'error');
  }
}

function show(signedIn) {
  if (poller !== null) clearInterval(poller);
  poller = signedIn ? setInterval(pollWatchers, 3000) : null;
  $('sign-in-view').hidden = signedIn;
  $('signed-in-view').hidden = !signedIn;
  $('who').hidden = !signedIn;
}

function init() {
  $('provisioning-url').textContent = location.origin + '/provisioning';
  $('sign-in').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const body = { user: $('user').value.trim(), password: $('password').value };
      if (!$('code-label').hidden && $('totp').value.trim()) body.totp = $('totp').value.trim();
      const s = await api('POST', '/user/v1/session', body);
      sessionStorage.setItem(TOKEN, s.token);
      $('password').value = '';
      $('totp').value = '';
      $('code-label').hidden = true;
      show(true);
      $('me').textContent = s.user;
      status('Signed in as ' + s.user, 'ok');
      await refresh();
    } catch (e) {
      if (e.data.second_factor === 'totp') {
        $('code-label').hidden = false;
        $('totp').focus();
      }
      status(e.message, 'error');
    }
  });
  $('factor-start').addEventListener('click', async () => {
    try {
      const f = await api('POST', '/user/v1/second-factor');
      showQr(f.qr_svg);
      $('factor-secret').textContent = f.secret;
      $('factor-setup').hidden = false;
      status('Scan the code, then type the code the app shows', 'ok');
    } catch (e) {
      status(e.message, 'error');
    }
  });
  $('factor-confirm').addEventListener('submit', (ev) => {
    ev.preventDefault();
    change(async () => {
      await api('POST', '/user/v1/second-factor/confirm', { code: $('factor-code').value.trim() });
      $('factor-code').value = '';
      $('factor-setup').hidden = true;
      $('factor-qr').replaceChildren();
      $('factor-secret').textContent = '';
    }, 'Authenticator app set up: you will be asked for its code when you sign in');
  });
  $('add-device').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('device-name').value.trim();
    const body = { name, csr: $('device-csr').value.trim() };
    if ($('device-code').value.trim()) body.enrollment_code = $('device-code').value.trim();
    change(async () => {
      const d = await api('POST', '/user/v1/devices', body);
      showCertificate(d.certificate, name);
      $('device-name').value = '';
      $('device-csr').value = '';
      $('device-code').value = '';
    }, 'Certificate issued for ' + name + ': download it below');
  });
  $('add-bundle').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('bundle-name').value.trim();
    const body = { name };
    if ($('bundle-code').value.trim()) body.enrollment_code = $('bundle-code').value.trim();
    change(async () => {
      const d = await api('POST', '/user/v1/devices/bundle', body);
      const bytes = Uint8Array.from(atob(d.pkcs12), (c) => c.charCodeAt(0));
      if (bundleUrl) URL.revokeObjectURL(bundleUrl);
      bundleUrl = URL.createObjectURL(new Blob([bytes], { type: 'application/x-pkcs12' }));
      const a = $('bundle-download');
      a.href = bundleUrl;
      a.download = name.replace(/[^A-Za-z0-9._-]+/g, '-') + '.p12';
      $('bundle-passphrase').textContent = d.passphrase;
      $('bundle-issued').hidden = false;
      $('bundle-name').value = '';
      $('bundle-code').value = '';
    }, 'Bundle made for ' + name + ': download it and note the passphrase');
  });
  $('sign-out-everywhere').addEventListener('click', async () => {
    try {
      await api('POST', '/user/v1/sign-out-everywhere');
      sessionStorage.removeItem(TOKEN);
      show(false);
      status('Signed out everywhere: every device is revoked and every session ended', 'ok');
    } catch (e) {
      status(e.message, 'error');
    }
  });
  $('sign-out').addEventListener('click', async () => {
    try {
      await api('DELETE', '/user/v1/session');
    } catch (_) {
      // The session may have ended already; sign out here anyway.
    }
    sessionStorage.removeItem(TOKEN);
    show(false);
    status('Signed out', 'ok');
  });
  $('add-contact').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const contact = $('new-contact').value.trim();
    const body = {};
    if ($('new-relationship').value) body.relationship = $('new-relationship').value;
    if ($('new-name').value.trim()) body.display_name = $('new-name').value.trim();
    if ($('new-group').value) body.groups = [$('new-group').value];
    change(async () => {
      await api('PUT', '/user/v1/contacts/' + enc(contact), body);
      $('new-contact').value = '';
      $('new-name').value = '';
    }, contact + ' added');
  });
  $('add-group').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = $('new-group-name').value.trim();
    change(async () => {
      await api('PUT', '/user/v1/contact-groups/' + enc(name));
      $('new-group-name').value = '';
    }, 'group ' + name + ' created');
  });
  if (sessionStorage.getItem(TOKEN)) {
    show(true);
    refresh();
  } else {
    show(false);
  }
}

document.addEventListener('DOMContentLoaded', init);
