// What jssip.mjs and sipjs.mjs share: arguments, the JSON event stream on
// stdout, the command loop on stdin, the PIDF document and the WebSocket
// global the libraries expect. Each driver only maps these onto its library.
//
// Arguments: --ws wss://HOST:PORT --user NAME --password PW --domain DOMAIN
// [--trace] (every SIP message and library debug line to stderr).
// Environment: NODE_EXTRA_CA_CERTS=<ca.pem> makes Node (and so ws) trust the
// server's private CA.
import { createInterface } from 'node:readline';
import { parseArgs, format } from 'node:util';
import WebSocket from 'ws';

export const { values: args } = parseArgs({
  options: {
    ws: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    domain: { type: 'string' },
    trace: { type: 'boolean', default: false },
  },
});
for (const k of ['ws', 'user', 'password', 'domain']) {
  if (!args[k]) {
    process.stderr.write(`missing --${k}\n`);
    process.exit(2);
  }
}
// The AOR names the SIP domain, whatever host the WebSocket URL names.
export const aor = `sip:${args.user}@${args.domain}`;

// Node 20 has no WebSocket global; both libraries construct `WebSocket`
// (with the "sip" subprotocol) when they connect. Load them after this.
globalThis.WebSocket = WebSocket;

// stdout carries events only, one JSON object a line. Writes to a pipe are
// synchronous on Linux, so each line is out before the next statement.
// If the reader has gone (EPIPE), events are dropped; end of stdin follows.
let stdoutGone = false;
process.stderr.on('error', () => {});
process.stdout.on('error', () => {
  stdoutGone = true;
});
export function emit(event) {
  if (!stdoutGone) process.stdout.write(JSON.stringify(event) + '\n');
}

export function log(...parts) {
  process.stderr.write(format(...parts) + '\n');
}

// Libraries may log through console.*: keep stdout for events.
for (const m of ['log', 'info', 'debug', 'warn', 'error', 'trace']) {
  console[m] = (...parts) => log(...parts);
}

process.on('uncaughtException', (e) => {
  log('uncaught:', e);
  emit({ event: 'error', text: String(e && e.stack ? e.message : e) });
});
process.on('unhandledRejection', (e) => {
  log('unhandled rejection:', e);
  emit({ event: 'error', text: String(e && e.message ? e.message : e) });
});

// "403 Forbidden" from a status and reason, or the fallback.
export function statusText(code, reason, fallback) {
  return code ? `${code} ${reason || ''}`.trim() : fallback;
}

export function pidf(entity, basic) {
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="${entity}">`,
    `  <tuple id="t1"><status><basic>${basic}</basic></status></tuple>`,
    '</presence>',
    '',
  ].join('\r\n');
}

// `message` arguments: the target, one space, then the text as it is.
export function splitMessage(rest) {
  const [, to, text] = /^(\S+) ?(.*)$/s.exec(rest) || [];
  if (!to) throw new Error('message <uri> <text...>');
  return [to, text];
}

// Resolves after `ms` with `value` (for bounding waits on the server).
export const after = (ms, value) =>
  new Promise((resolve) => setTimeout(resolve, ms, value));

// Runs the driver: waits for `registered` (a promise settled once the first
// REGISTER has a final answer, either way), then runs commands from stdin
// one at a time. `handlers` maps a command to async (args: string) => void
// (the rest of the line after the command and one space, kept as it is),
// and must have `quit`, which unregisters (bounded in time). End of stdin
// quits too. The process exits 0 after quit, whatever the server did.
export function run(registered, handlers) {
  const lines = createInterface({ input: process.stdin, terminal: false });
  let chain = registered.catch(() => {});
  let quitting = false;
  const quit = () => {
    if (quitting) return;
    quitting = true;
    // A hard stop in case the server or the library hangs.
    setTimeout(() => {
      log('quit took too long, exiting');
      process.exit(0);
    }, 20000).unref();
    chain = chain
      .then(() => handlers.quit())
      .catch((e) => emit({ event: 'error', text: `quit: ${e.message || e}` }))
      .finally(() => process.exit(0));
  };
  lines.on('line', (line) => {
    const [, cmd, rest] = /^\s*(\S*) ?(.*)$/s.exec(line.replace(/\r$/, ''));
    if (!cmd || quitting) return;
    if (cmd === 'quit') return quit();
    const handler = handlers[cmd];
    if (!handler) {
      emit({ event: 'error', text: `unknown command: ${cmd}` });
      return;
    }
    chain = chain
      .then(() => handler(rest))
      .catch((e) => emit({ event: 'error', text: `${cmd}: ${e.message || e}` }));
  });
  lines.on('close', () => {
    log('stdin closed');
    quit();
  });
}
