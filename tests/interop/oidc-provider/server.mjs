// A certified OpenID provider (panva/node-oidc-provider 8.8.1) on loopback for brickgate's interop
// e2e tests (tests/e2e/test_oidc_interop.py). Node.js 20: oidc-provider 9 dropped Node 20
// (CHANGELOG "removed support for Node.js 20.x", commit db575566c2648dc0dbd03344e6ad9c4cbf36d720);
// 8.8.1 (tag v8.8.1, commit c44aa538bf6e5e3587fc2bcb8e358f87379d7dbf) is the last release before it.
//
// Protocol with the test, one JSON object per line:
//   stdin:  a configuration (below). The first one starts the provider; every later one replaces it
//           in place on the same port (a key rotation without a moment with no provider listening).
//   stdout: `oidc-interop: ` then {"ready": true, "issuer": "...", "generation": n} after each configuration is applied,
//           {"error": "..."} when one is refused (the previous provider stays).
// Configuration:
//   keys:      [{"kid": "...", "pem": "<PKCS#8 private key>"}], the FIRST one signs: oidc-provider
//              signs with the first key that fits the algorithm (docs/README.md "jwks", rotation
//              recommendation, and lib/models/formats/jwt.js `keystore.selectForVerify`, v8.8.1).
//   clients:   [{"client_id", "client_secret", "scope"}], client_credentials only.
//   resources: {"<resource indicator>": {"scope": "a b", "audience"?: "...", "ttl_s"?: 300}}; an
//              unknown indicator is refused with invalid_target (RFC 8707).
// Nothing else is configurable: everything an attacker could reach is the provider's own endpoints.

import { createPrivateKey, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { createInterface } from 'node:readline';

import Provider, { errors } from 'oidc-provider';

const DEFAULT_TTL_S = 300;

// oidc-provider prints its own notices on stdout too: the test reads only lines with this prefix.
const PROTOCOL_PREFIX = 'oidc-interop: ';

function say(message) {
  process.stdout.write(`${PROTOCOL_PREFIX}${JSON.stringify(message)}\n`);
}

function privateJwks(keys) {
  if (!Array.isArray(keys) || keys.length === 0) throw new Error('keys: at least one signing key is needed');
  return {
    keys: keys.map(({ kid, pem }) => ({ ...createPrivateKey(pem).export({ format: 'jwk' }), kid, use: 'sig' })),
  };
}

function buildProvider(issuer, config) {
  const resources = config.resources ?? {};
  const scopes = new Set(Object.values(resources).flatMap((rs) => rs.scope.split(' ')));
  const provider = new Provider(issuer, {
    clients: (config.clients ?? []).map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      scope: client.scope,
      // "Client Credentials only clients" (docs/README.md, v8.8.1).
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
    })),
    jwks: privateJwks(config.keys),
    scopes: [...scopes],
    // No interactive flows here, so no cookies are ever read; a fresh key silences the warning.
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    features: {
      devInteractions: { enabled: false },
      // features.clientCredentials and features.resourceIndicators (docs/README.md, v8.8.1): with
      // accessTokenFormat 'jwt' the token is an RFC 9068 JWT (`typ: at+jwt`, `sub` = client id
      // when no end-user is involved: lib/models/formats/jwt.js).
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (ctx, indicator) => {
          const rs = resources[indicator];
          if (!rs) throw new errors.InvalidTarget();
          return {
            scope: rs.scope,
            audience: rs.audience ?? indicator,
            accessTokenTTL: rs.ttl_s ?? DEFAULT_TTL_S,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  // Everything the provider refuses or fails at reaches the test's log (printed when a test fails).
  for (const event of ['server_error', 'grant.error', 'discovery.error', 'jwks.error']) {
    provider.on(event, (ctx, error) => console.error(`oidc-provider ${event}: ${error?.message ?? error}`));
  }
  return provider;
}

let handle = null;
let generation = 0;
const server = createServer((req, res) => {
  // One log line per request, so a test can tell which endpoints brickgate called. The path only:
  // the query and body can hold credentials.
  console.error(`request ${req.method} ${req.url.split('?')[0]}`);
  if (handle) return handle(req, res);
  res.writeHead(503).end();
  return undefined;
});

function apply(line, issuer) {
  let config;
  try {
    config = JSON.parse(line);
    handle = buildProvider(issuer, config).callback();
  } catch (error) {
    say({ error: String(error?.message ?? error) });
    return;
  }
  generation += 1;
  say({ ready: true, issuer, generation });
}

// A port of the kernel's choosing: no race with another process for a "free" port.
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    if (line.trim()) apply(line, issuer);
  });
  // The test closing our stdin (or dying) ends the provider.
  lines.on('close', () => process.exit(0));
});
