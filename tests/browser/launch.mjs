// Debian's chromium as the browser tests start it: headless, without the
// background networking this machine's closed network refuses, and
// accepting exactly the server's certificate key (the server's certificate
// comes from a private CA made on first start) and nothing else.
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { chromium } from 'playwright-core';

export async function launch(certPath, extraArgs = []) {
  const cert = new X509Certificate(readFileSync(certPath));
  const spki = createHash('sha256')
    .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extraArgs,
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
}
