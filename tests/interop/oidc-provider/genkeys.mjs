// Writes a private JWK Set with one fresh RSA-2048 signing key.
// Usage: node genkeys.mjs OUT_FILE KID
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [out, kid] = process.argv.slice(2);
if (!out || !kid) {
  console.error('usage: node genkeys.mjs OUT_FILE KID');
  process.exit(2);
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
writeFileSync(out, JSON.stringify({ keys: [jwk] }));
