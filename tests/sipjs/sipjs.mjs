// A SIP.js user agent over WSS, driven by lines on stdin, reporting JSON
// events on stdout (see common.mjs and the README beside this file).
// Commands: message <uri> <text...>, subscribe <uri>,
// publish open|closed|remove, quit.
import { args, aor, emit, log, statusText, splitMessage, pidf, after, run } from './common.mjs';

const { UserAgent, Registerer, RegistererState, Messager, Subscriber, Publisher, PublisherState } =
  await import('sip.js');

const ua = new UserAgent({
  uri: UserAgent.makeURI(aor),
  authorizationUsername: args.user,
  authorizationPassword: args.password,
  transportOptions: { server: args.ws },
  logBuiltinEnabled: false,
  logConfiguration: args.trace,
  logLevel: args.trace ? 'debug' : 'warn',
  // Every warning SIP.js logs (about the server's responses, mostly) is
  // an event. The connector gets every level whatever logLevel says.
  logConnector(level, category, label, content) {
    const serious = level === 'warn' || level === 'error';
    if (args.trace || serious) log(`${level} ${category}${label ? ` (${label})` : ''}: ${content}`);
    if (serious) {
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
let publishAnswered = () => {}; // called on each final response
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
    publishAnswered();
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

const subscriptions = []; // { sub, ended: settles on the final NOTIFY }

run(register(), {
  message(rest) {
    const [to, text] = splitMessage(rest);
    const messager = new Messager(ua, target(to), text, 'text/plain');
    messager.message({
      requestDelegate: {
        onAccept: () => emit({ event: 'message_sent', to }),
        onReject: ({ message: r }) => emit({
          event: 'message_failed', to, cause: statusText(r.statusCode, r.reasonPhrase), status: r.statusCode,
        }),
      },
    }).catch((e) => emit({ event: 'message_failed', to, cause: e.message || String(e) }));
  },

  subscribe(rest) {
    const to = rest.trim();
    const sub = new Subscriber(ua, target(to), 'presence', {
      expires: 600,
      extraHeaders: ['Accept: application/pidf+xml'],
    });
    // SIP.js has no public hooks for the 2xx to SUBSCRIBE, nor for the
    // NOTIFYs after unsubscribe(); its (internal) onAccepted and onNotify
    // handle them, looked up on the instance each time, so wrap those.
    sub.onAccepted = () => emit({ event: 'subscribed', to });
    let ended;
    const onNotify = sub.onNotify.bind(sub);
    sub.onNotify = (request) => {
      const req = request.message;
      if (req.body) emit({ event: 'notify', from: req.from.uri.toString(), body: req.body });
      if (/^\s*terminated/i.test(req.getHeader('Subscription-State') || '')) ended();
      onNotify(request); // accepts it
    };
    subscriptions.push({ sub, ended: new Promise((resolve) => { ended = resolve; }) });
    sub.stateChange.addListener((state) => {
      if (state === 'Terminated') emit({ event: 'subscription_terminated', to });
    });
    return sub.subscribe();
  },

  publish(rest) {
    const what = rest.trim();
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
    // End subscriptions and the publication ourselves, waiting (bounded)
    // for the final NOTIFYs and the PUBLISH answer: ua.stop() would not
    // wait for the PUBLISH, and waits for ever for a subscription that the
    // server ends with a NOTIFY (SIP.js 0.21 never calls the dialog's
    // onTerminated then).
    const waits = [];
    for (const { sub, ended } of subscriptions) {
      if (sub.state === 'Subscribed') {
        sub.unsubscribe();
        waits.push(ended);
      }
    }
    if (publisher && publisher.state === PublisherState.Published) {
      publishing = 'remove';
      waits.push(new Promise((resolve) => { publishAnswered = resolve; }));
      publisher.unpublish();
    }
    await Promise.race([Promise.all(waits), after(5000)]);
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
