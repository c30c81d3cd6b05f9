#!/usr/bin/env python3
"""Mints tokens with joserfc, an independent JOSE implementation, for trustgate's interop test.

Usage: joserfc_mint.py DIR

Generates one key pair per algorithm (RS256, PS256, ES256, EdDSA with Ed25519), writes
DIR/jwks.json with the public keys only, and DIR/tokens.json mapping each algorithm to a token
whose claims are iss/aud/sub/exp/iat/nbf. The issuer and audience are read from the environment
(TRUSTGATE_INTEROP_ISS, TRUSTGATE_INTEROP_AUD) with defaults matching the Rust test.
"""

import json
import os
import sys
import time
import warnings

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

ISS = os.environ.get("TRUSTGATE_INTEROP_ISS", "https://joserfc.interop.test")
AUD = os.environ.get("TRUSTGATE_INTEROP_AUD", "interop-api")

# joserfc flags "EdDSA" as deprecated by RFC 9864 (in favour of "Ed25519"); trustgate names the
# algorithm EdDSA, so that is the spelling under test.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: joserfc_mint.py DIR", file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)

    keys = {
        "RS256": RSAKey.generate_key(2048, parameters={"kid": "jr-rs256", "alg": "RS256", "use": "sig"}),
        "PS256": RSAKey.generate_key(2048, parameters={"kid": "jr-ps256", "alg": "PS256", "use": "sig"}),
        "ES256": ECKey.generate_key("P-256", parameters={"kid": "jr-es256", "alg": "ES256", "use": "sig"}),
        "EdDSA": OKPKey.generate_key("Ed25519", parameters={"kid": "jr-eddsa", "alg": "EdDSA", "use": "sig"}),
    }

    public = KeySet(list(keys.values())).as_dict(private=False)
    for jwk in public["keys"]:
        for private_member in ("d", "p", "q", "dp", "dq", "qi"):
            if private_member in jwk:
                raise SystemExit(f"private member {private_member} in the public JWKS")
    with open(os.path.join(out, "jwks.json"), "w", encoding="utf-8") as f:
        json.dump(public, f)

    now = int(time.time())
    tokens = {}
    for alg, key in keys.items():
        claims = {
            "iss": ISS,
            "aud": AUD,
            "sub": f"joserfc-{alg.lower()}",
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
        }
        header = {"alg": alg, "kid": key.kid, "typ": "JWT"}
        tokens[alg] = jwt.encode(header, claims, key, algorithms=[alg])
    with open(os.path.join(out, "tokens.json"), "w", encoding="utf-8") as f:
        json.dump(tokens, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
