// A real OpenID provider (node-oidc-provider) for the portal's sign-in tests.
//
// Started by tests/oidc/conftest.py, never by hand in production. Everything comes from the
// environment so a test can decide it:
//   OIDC_TEST_PORT            port on 127.0.0.1; the issuer is http://127.0.0.1:<port>
//   OIDC_TEST_USERS_FILE      JSON {"<username>": {"email", "name", "groups": [...]}, ...},
//                             read again on every lookup: a test edits it to change groups
//   OIDC_TEST_JWKS_FILE       JSON {"keys": [<private RSA JWK>]}: the signing key, which the
//                             test also holds (it signs an expired token with it)
//   OIDC_TEST_CLIENT_ID, OIDC_TEST_CLIENT_SECRET, OIDC_TEST_REDIRECT_URIS (comma-separated)
//
// The login page is a minimal form (username only: the test users have no passwords) that a
// browser or a plain HTTP client fills in; consent is granted at once for the one client.
// It prints "listening on <issuer>" when it is ready.

import { readFileSync } from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.env.OIDC_TEST_PORT);
const issuer = `http://127.0.0.1:${port}`;
const usersFile = process.env.OIDC_TEST_USERS_FILE;
const jwks = JSON.parse(readFileSync(process.env.OIDC_TEST_JWKS_FILE, 'utf8'));
const clientId = process.env.OIDC_TEST_CLIENT_ID;
const scopes = 'openid email profile groups';

function users() {
  return JSON.parse(readFileSync(usersFile, 'utf8'));
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: process.env.OIDC_TEST_CLIENT_SECRET,
    redirect_uris: process.env.OIDC_TEST_REDIRECT_URIS.split(',').filter(Boolean),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }],
  jwks,
  cookies: { keys: ['test-only-cookie-key'] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  // One first-party client: consent is implied, so the only interaction is the login form.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(scopes);
    await grant.save();
    return grant;
  },
  async findAccount(ctx, sub) {
    const user = users()[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        // Read again at each call (ID token, userinfo): the test may have changed the groups.
        const current = users()[sub] || {};
        return {
          sub,
          preferred_username: sub,
          name: current.name || sub,
          email: current.email || `${sub}@example.test`,
          email_verified: true,
          groups: current.groups || [],
        };
      },
    };
  },
});

function loginPage(uid, error) {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test identity provider</title></head>
<body><h1>Test identity provider</h1>
${error ? `<p role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}/login">
<label for="username">Username</label> <input id="username" name="username" autocomplete="off">
<button type="submit">Sign in</button>
</form></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  if (action === 'login' && req.method === 'POST') {
    const username = (await readForm(req)).get('username') || '';
    if (!users()[username]) {
      res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
      res.end(loginPage(uid, `No test user ${username}`));
      return;
    }
    await provider.interactionFinished(req, res, { login: { accountId: username } }, { mergeWithLastSubmission: false });
    return;
  }
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(loginPage(uid, ''));
}

const handler = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\/(login))?/.exec(req.url);
  if (!match) {
    handler(req, res);
    return;
  }
  interaction(req, res, match[1], match[2]).catch((error) => {
    console.error(error);
    if (!res.headersSent) res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(String(error.message || error));
  });
});
server.listen(port, '127.0.0.1', () => console.log(`listening on ${issuer}`));
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
