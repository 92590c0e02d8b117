// One side of a call between two browsers through Parapet's media relay:
// Debian's chromium (fake microphone) runs SIP.js 0.21 (its ES modules,
// served to the page from tests/sipjs/node_modules) over WSS, with the
// relay credentials the user API mints for the signed-in session and
// `iceTransportPolicy: "relay"`. The callee (no CALL_TARGET) answers the
// first call; the caller calls CALL_TARGET. Once the call has lasted
// CALL_SECS, each prints what getStats says, one JSON line starting
// `stats `, and hangs up (the caller) or waits for the BYE (the callee).
// Run by crates/parapet/tests/e2e/nat_lab.rs, inside a NAT laboratory's
// namespace.
//
// Environment: CALL_ORIGIN (https://HOST:4443, the user listener), CALL_WS
// (wss://HOST:8443), CALL_USER, CALL_PASSWORD, CALL_DOMAIN, CALL_TARGET,
// CALL_SECS, CALL_CERT (the server certificate, PEM: its key is the one
// chromium is told to accept).
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch } from './launch.mjs';

const env = (k, d) => {
  const v = process.env[k] ?? d;
  if (v === undefined) throw new Error(`${k} is not set`);
  return v;
};
const origin = env('CALL_ORIGIN');
const target = env('CALL_TARGET', '');
const here = dirname(fileURLToPath(import.meta.url));
const sipjs = join(here, '../sipjs/node_modules/sip.js/lib');

const browser = await launch(env('CALL_CERT'), [
  '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
  '--autoplay-policy=no-user-gesture-required',
]);
const page = await browser.newPage();
page.on('console', (m) => console.error(`page ${m.type()}: ${m.text()}`));
page.on('pageerror', (e) => console.error(`page error: ${e}`));

// The page and SIP.js are served as if from the user listener (the origin
// the WebSocket listener accepts); everything else goes to the server.
const html = `<!doctype html><meta charset="utf-8"><title>call</title><audio id="remote" autoplay></audio>`;
await page.route(`${origin}/call.html`, (r) => r.fulfill({ contentType: 'text/html', body: html }));
await page.route(`${origin}/sipjs/**`, (r) => {
  const rel = normalize(new URL(r.request().url()).pathname.slice('/sipjs/'.length));
  if (rel.startsWith('..')) return r.abort();
  return r.fulfill({ contentType: 'text/javascript', body: readFileSync(join(sipjs, rel)) });
});
await page.goto(`${origin}/call.html`);

const settings = {
  ws: env('CALL_WS'),
  user: env('CALL_USER'),
  password: env('CALL_PASSWORD'),
  domain: env('CALL_DOMAIN'),
  target,
  secs: Number(env('CALL_SECS', '6')),
};
const result = await page.evaluate(async (s) => {
  const { Web } = await import('/sipjs/index.js');
  // Sign in to the user API and get the relay's credentials for this session.
  const post = async (path, token, body) => {
    const r = await fetch(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const session = await post('/user/v1/session', null, { user: s.user, password: s.password });
  const ice = await post('/user/v1/relay-credentials', session.token);
  const iceServers = [{ urls: ice.urls, username: ice.username, credential: ice.credential }];
  const remote = document.getElementById('remote');
  let answered;
  let hungUp;
  const established = new Promise((resolve) => { answered = resolve; });
  const ended = new Promise((resolve) => { hungUp = resolve; });
  const user = new Web.SimpleUser(s.ws, {
    aor: `sip:${s.user}@${s.domain}`,
    media: { constraints: { audio: true, video: false }, remote: { audio: remote } },
    userAgentOptions: {
      authorizationUsername: s.user,
      authorizationPassword: s.password,
      logLevel: 'warn',
      sessionDescriptionHandlerFactoryOptions: {
        peerConnectionConfiguration: { iceServers, iceTransportPolicy: 'relay' },
      },
    },
    delegate: {
      onCallReceived: async () => {
        await user.answer();
        answered();
      },
      onCallAnswered: () => answered(),
      onCallHangup: () => hungUp(),
    },
  });
  await user.connect();
  await user.register();
  console.log('registered');
  if (s.target) {
    await user.call(s.target);
  }
  await established;
  await new Promise((r) => setTimeout(r, s.secs * 1000));
  const pc = user.session.sessionDescriptionHandler.peerConnection;
  const stats = [...(await pc.getStats()).values()];
  const byId = new Map(stats.map((x) => [x.id, x]));
  const transport = stats.find((x) => x.type === 'transport');
  const pair = byId.get(transport?.selectedCandidatePairId)
    ?? stats.find((x) => x.type === 'candidate-pair' && x.nominated && x.state === 'succeeded');
  const inbound = stats.find((x) => x.type === 'inbound-rtp' && x.kind === 'audio');
  const out = {
    local: byId.get(pair?.localCandidateId)?.candidateType,
    remote: byId.get(pair?.remoteCandidateId)?.candidateType,
    relayProtocol: byId.get(pair?.localCandidateId)?.relayProtocol,
    dtlsState: transport?.dtlsState,
    srtpCipher: transport?.srtpCipher,
    bytesReceived: inbound?.bytesReceived ?? 0,
    packetsReceived: inbound?.packetsReceived ?? 0,
  };
  if (s.target) {
    await user.hangup();
  } else {
    // The callee stays until the caller hangs up (or a while).
    await Promise.race([ended, new Promise((r) => setTimeout(r, 10000))]);
  }
  return out;
}, settings);
console.log(`stats ${JSON.stringify(result)}`);
await browser.close();
