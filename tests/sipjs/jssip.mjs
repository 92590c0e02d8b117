// A JsSIP user agent over WSS, driven by lines on stdin, reporting JSON
// events on stdout (see common.mjs and the README beside this file).
// Commands: message <uri> <text...>, subscribe <uri>, quit. JsSIP has no
// PUBLISH API, so `publish` answers with an error event.
import { args, aor, emit, log, statusText, splitMessage, after, run } from './common.mjs';

// JsSIP logs through `debug`, whose warnings and errors it hands to
// console.warn / console.error (bound when JsSIP loads, so this comes
// first). Lines under JsSIP:WARN / JsSIP:ERROR become events.
process.env.DEBUG_COLORS = 'no';
const toStderr = console.warn;
console.warn = console.error = (...parts) => {
  toStderr(...parts);
  const text = parts.map((p) => (p && p.message) || String(p)).join(' ');
  const m = /JsSIP:(WARN|ERROR):(\S+) (.*)$/s.exec(text);
  if (m) emit({ event: m[1] === 'WARN' ? 'warning' : 'error', text: `${m[2]}: ${m[3]}` });
};
const { default: JsSIP } = await import('jssip');
JsSIP.debug.enable(args.trace ? 'JsSIP:*' : 'JsSIP:WARN:*,JsSIP:ERROR:*');

const ua = new JsSIP.UA({
  sockets: [new JsSIP.WebSocketInterface(args.ws)],
  uri: aor,
  password: args.password,
  register: true,
});

// Settles once: registered, refused, or no connection at all (JsSIP keeps
// reconnecting on its own, so a connection that fails before the first
// REGISTER is answered, refused or TLS not trusted, counts as failure).
const registered = new Promise((resolve, reject) => {
  let settled = false;
  const fail = (event) => {
    if (settled) return;
    settled = true;
    emit({ event: 'registration_failed', ...event });
    reject(new Error('registration failed'));
  };
  ua.on('registered', () => {
    emit({ event: 'registered' });
    settled = true;
    resolve();
  });
  ua.on('registrationFailed', (e) => {
    const r = e.response;
    fail({
      cause: statusText(r && r.status_code, r && r.reason_phrase, e.cause),
      ...(r ? { status: r.status_code, reason: r.reason_phrase } : {}),
    });
  });
  ua.on('disconnected', (e) => {
    log('transport disconnected', e && e.error ? 'with error' : '');
    fail({ cause: `connection failed${e && e.reason ? `: ${e.reason}` : ''}` });
  });
});

// Incoming MESSAGE: JsSIP answers 200 itself once the handlers have run.
ua.on('newMessage', (e) => {
  if (e.originator !== 'remote') return;
  emit({ event: 'message', from: e.request.from.uri.toString(), body: e.request.body });
});

const subscribers = [];

run(registered, {
  message(rest) {
    const [to, text] = splitMessage(rest);
    ua.sendMessage(to, text, {
      contentType: 'text/plain',
      eventHandlers: {
        succeeded: () => emit({ event: 'message_sent', to }),
        failed: (e) => {
          const r = e.response;
          emit({
            event: 'message_failed',
            to,
            cause: statusText(r && r.status_code, r && r.reason_phrase, e.cause),
            ...(r ? { status: r.status_code } : {}),
          });
        },
      },
    });
  },

  subscribe(rest) {
    const to = rest.trim();
    const sub = ua.subscribe(to, 'presence', 'application/pidf+xml', { expires: 600 });
    sub.on('accepted', () => emit({ event: 'subscribed', to }));
    sub.on('notify', (isFinal, request, body) => {
      if (body) emit({ event: 'notify', from: request.from.uri.toString(), body });
    });
    sub.on('terminated', (code, reason) => {
      // sub.C holds the termination codes first, then the states.
      const cause = Object.keys(sub.C).find((k) => sub.C[k] === code) || String(code);
      emit({ event: 'subscription_terminated', to, cause, reason });
    });
    sub.subscribe();
    subscribers.push(sub);
  },

  publish() {
    emit({ event: 'error', text: 'publish: JsSIP has no PUBLISH API' });
  },

  async quit() {
    for (const sub of subscribers) {
      if (sub.state !== sub.C.STATE_TERMINATED) sub.terminate();
    }
    if (ua.isRegistered()) {
      const done = new Promise((resolve) => ua.once('unregistered', resolve));
      ua.unregister();
      const e = await Promise.race([done, after(10000)]);
      if (e === undefined) emit({ event: 'error', text: 'no answer to the unregistering REGISTER' });
      else if (e.response && e.response.status_code >= 300) {
        emit({ event: 'error', text: `unregister: ${statusText(e.response.status_code, e.response.reason_phrase)}` });
      } else emit({ event: 'unregistered' });
    }
    // stop() closes the socket once its transactions are done (up to ~2 s).
    const stopped = new Promise((resolve) => ua.once('disconnected', resolve));
    ua.stop();
    await Promise.race([stopped, after(3000)]);
  },
});
ua.start();
