// A SIP.js user agent over WSS, driven by lines on stdin, reporting JSON
// events on stdout (see common.mjs and the README beside this file).
// Commands: message <uri> <text...>, subscribe <uri>,
// publish open|closed|remove, quit.
import { args, aor, emit, log, statusText, pidf, after, run } from './common.mjs';

const { UserAgent, Registerer, RegistererState, Messager, Subscriber, Publisher, PublisherState } =
  await import('sip.js');

const ua = new UserAgent({
  uri: UserAgent.makeURI(aor),
  authorizationUsername: args.user,
  authorizationPassword: args.password,
  transportOptions: { server: args.ws },
  logBuiltinEnabled: false,
  logLevel: args.trace ? 'debug' : 'warn',
  // Every warning SIP.js logs (about the server's responses, mostly) is
  // an event; everything goes to stderr.
  logConnector(level, category, label, content) {
    log(`${level} ${category}${label ? ` (${label})` : ''}: ${content}`);
    if (level === 'warn' || level === 'error') {
      emit({ event: level === 'warn' ? 'warning' : 'error', text: content, category });
    }
  },
  delegate: {
    onMessage(message) {
      const req = message.request;
      emit({ event: 'message', from: req.from.uri.toString(), body: req.body });
      message.accept();
    },
  },
});

const registerer = new Registerer(ua);

async function register() {
  try {
    await ua.start();
  } catch (e) {
    emit({ event: 'registration_failed', cause: `connection failed: ${e.message || e}` });
    throw e;
  }
  await new Promise((resolve, reject) => {
    registerer.register({
      requestDelegate: {
        onAccept() {
          emit({ event: 'registered' });
          resolve();
        },
        onReject({ message: r }) {
          emit({
            event: 'registration_failed',
            cause: statusText(r.statusCode, r.reasonPhrase),
            status: r.statusCode,
            reason: r.reasonPhrase,
          });
          reject(new Error('registration failed'));
        },
      },
    });
  });
}

const target = (uri) => {
  const u = UserAgent.makeURI(uri);
  if (!u) throw new Error(`bad URI: ${uri}`);
  return u;
};

// One Publisher for the own AOR's presence. Its publish() returns before the
// answer and a refresh of an existing publication changes no state, so
// every final response is reported by wrapping its (internal)
// receiveResponse. After a failure SIP.js ends the Publisher: make anew.
let publisher;
let publishing; // what the last PUBLISH sent: open, closed or remove
function getPublisher() {
  if (publisher && publisher.state !== PublisherState.Terminated) return publisher;
  const p = new Publisher(ua, ua.configuration.uri, 'presence', {
    contentType: 'application/pidf+xml',
    expires: 3600,
  });
  const receive = p.receiveResponse.bind(p);
  p.receiveResponse = (response) => {
    receive(response);
    const code = response.statusCode || 0;
    if (code < 200) return;
    if (code < 300) {
      emit({ event: 'published', state: publishing, etag: response.getHeader('SIP-ETag') || null,
        expires: response.hasHeader('Expires') ? Number(response.getHeader('Expires')) : null });
    } else {
      emit({ event: 'publish_failed', state: publishing, cause: statusText(code, response.reasonPhrase),
        status: code });
    }
  };
  publisher = p;
  return p;
}

run(register(), {
  message([to, ...words]) {
    const messager = new Messager(ua, target(to), words.join(' '), 'text/plain');
    messager.message({
      requestDelegate: {
        onAccept: () => emit({ event: 'message_sent', to }),
        onReject: ({ message: r }) => emit({
          event: 'message_failed', to, cause: statusText(r.statusCode, r.reasonPhrase), status: r.statusCode,
        }),
      },
    }).catch((e) => emit({ event: 'message_failed', to, cause: e.message || String(e) }));
  },

  subscribe([to]) {
    const sub = new Subscriber(ua, target(to), 'presence', {
      expires: 600,
      extraHeaders: ['Accept: application/pidf+xml'],
    });
    // SIP.js has no public hook for the 2xx to SUBSCRIBE; onAccepted is
    // its (internal, empty) handler for it, called for every 2xx.
    sub.onAccepted = () => emit({ event: 'subscribed', to });
    sub.delegate = {
      onNotify(notification) {
        const req = notification.request;
        notification.accept();
        if (req.body) emit({ event: 'notify', from: req.from.uri.toString(), body: req.body });
      },
    };
    sub.stateChange.addListener((s) => {
      if (s === 'Terminated') emit({ event: 'subscription_terminated', to });
    });
    return sub.subscribe();
  },

  publish([what]) {
    if (what === 'remove') {
      if (!publisher || publisher.state !== PublisherState.Published) {
        emit({ event: 'publish_failed', state: 'remove', cause: 'nothing published' });
        return;
      }
      publishing = 'remove';
      return publisher.unpublish();
    }
    if (what !== 'open' && what !== 'closed') throw new Error('publish open|closed|remove');
    publishing = what;
    return getPublisher().publish(pidf(aor, what));
  },

  async quit() {
    // Unregister first; ua.stop() then ends subscriptions and publications.
    if (registerer.state === RegistererState.Registered) {
      const answer = new Promise((resolve) => {
        registerer.unregister({
          requestDelegate: {
            onAccept: () => resolve('ok'),
            onReject: ({ message: r }) => resolve(statusText(r.statusCode, r.reasonPhrase)),
          },
        }).catch((e) => resolve(e.message || String(e)));
      });
      const result = await Promise.race([answer, after(10000, 'no answer')]);
      if (result === 'ok') emit({ event: 'unregistered' });
      else emit({ event: 'error', text: `unregister: ${result}` });
    }
    await Promise.race([ua.stop(), after(5000)]);
  },
});
