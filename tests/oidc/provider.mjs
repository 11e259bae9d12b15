// A real OpenID Provider on loopback for the portal's sign-in tests: the certified
// `oidc-provider` package, with its own login page (username and password checked against a
// users file) and a groups claim.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"clients": [{client_id, client_secret, redirect_uris}], "users_file": PATH}
// USERS (re-read at every sign-in and claims request, so a test can change someone's groups):
//   {"alice": {"password": "…", "email": "…", "name": "…", "groups": ["platform-deployers"]}}
//
// Listens on 127.0.0.1 on a free port and prints `ISSUER <url>` once it accepts connections.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { parse as parseQuery } from 'node:querystring';

import Provider from 'oidc-provider';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const users = () => JSON.parse(readFileSync(config.users_file, 'utf8'));

const escape = (value) => String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Test IdP: sign in</title></head>
<body><h1>Test IdP</h1>${error ? `<p id="error">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="username" id="username" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button type="submit" id="signin">Sign in to Test IdP</button>
</form></body></html>`;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) reject(new Error('body too large'));
    });
    req.on('end', () => resolve(parseQuery(body)));
    req.on('error', reject);
  });
}

const server = createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients: config.clients.map((client) => ({
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_post',
    ...client,
  })),
  jwks: { keys: [jwk] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, id) {
    const user = users()[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        const current = users()[id] || {};
        const [given, ...family] = String(current.name || id).split(' ');
        return {
          sub: id,
          email: current.email,
          email_verified: true,
          name: current.name,
          given_name: given,
          family_name: family.join(' '),
          preferred_username: id,
          groups: current.groups || [],
        };
      },
    };
  },
  // The portal is a first-party client: no consent screen, the grant covers what it asked.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) {
      const existing = await ctx.oidc.provider.Grant.find(grantId);
      if (existing) return existing;
    }
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(ctx.oidc.params.scope);
    await grant.save();
    return grant;
  },
  renderError(ctx, out) {
    ctx.type = 'html';
    ctx.body = `<!doctype html><h1>Test IdP error</h1><pre>${escape(JSON.stringify(out))}</pre>`;
  },
});

const callback = provider.callback();

server.on('request', async (req, res) => {
  const match = req.url.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.prompt.name !== 'login') {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`unexpected prompt ${details.prompt.name}`);
      return undefined;
    }
    if (req.method === 'POST' && match[2]) {
      const { username, password } = await readBody(req);
      const user = users()[username];
      if (!user || user.password !== password) {
        res.writeHead(200, { 'content-type': 'text/html' }).end(loginPage(match[1], 'Wrong username or password.'));
        return undefined;
      }
      return await provider.interactionFinished(req, res, { login: { accountId: username } }, {
        mergeWithLastSubmission: false,
      });
    }
    res.writeHead(200, { 'content-type': 'text/html', 'cache-control': 'no-store' }).end(loginPage(match[1]));
  } catch (error) {
    res.writeHead(400, { 'content-type': 'text/plain' }).end(`interaction failed: ${error.message}`);
  }
  return undefined;
});

process.on('SIGTERM', () => process.exit(0));
console.log(`ISSUER ${issuer}`);
