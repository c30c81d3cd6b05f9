// A real OpenID Provider (panva/oidc-provider) for trustgate's interop test.
// Usage: node server.mjs PORT JWKS_FILE
//   PORT       listens on 127.0.0.1:PORT; the issuer is http://127.0.0.1:PORT
//   JWKS_FILE  a private JWK Set; the first RS256 key signs, all are published
// Prints "oidc-provider listening <issuer>" once it accepts connections.
import { readFileSync } from 'node:fs';
import Provider from 'oidc-provider';

const [port, jwksFile] = process.argv.slice(2);
if (!port || !jwksFile) {
  console.error('usage: node server.mjs PORT JWKS_FILE');
  process.exit(2);
}

const issuer = `http://127.0.0.1:${port}`;
const resource = 'https://api.trustgate.test/';
const jwks = JSON.parse(readFileSync(jwksFile, 'utf8'));

const provider = new Provider(issuer, {
  jwks,
  clients: [
    {
      client_id: 'interop-client',
      client_secret: 'interop-secret-0123456789abcdef',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  scopes: ['api:read'],
  features: {
    // Only client_credentials is used: no browser interactions, no login pages.
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: false },
    revocation: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api:read',
        audience: 'trustgate-api',
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  cookies: { keys: ['interop-test-cookie-key-not-secret'] },
  ttl: {
    ClientCredentials: 600,
  },
});

provider.on('server_error', (_ctx, err) => {
  console.error('oidc-provider server_error', err);
});

const server = provider.listen(Number(port), '127.0.0.1', () => {
  console.log(`oidc-provider listening ${issuer}`);
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
