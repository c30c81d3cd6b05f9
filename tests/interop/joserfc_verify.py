#!/usr/bin/env python3
"""Verifies trustgate's internal tokens with joserfc, an independent JOSE implementation.

Usage: joserfc_verify.py FILE

FILE holds a JSON list of {"token": "...", "jwks": [<JWK Set>, ...]}: each token is verified
against each key set (the JWK Sets of several replicas, fetched after it was minted). Prints
"verified N" and exits 0 when every check passed; else prints each failure and exits 1.
"""

import json
import sys
import warnings

from joserfc import jws
from joserfc.jwk import KeySet

# joserfc flags "EdDSA" as deprecated by RFC 9864; trustgate names the algorithm EdDSA.
warnings.filterwarnings("ignore", message="EdDSA is deprecated")


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 64
    with open(sys.argv[1], encoding="utf-8") as f:
        cases = json.load(f)
    verified = 0
    failures = []
    for case in cases:
        for index, jwks in enumerate(case["jwks"]):
            try:
                keys = KeySet.import_key_set(jwks)
                jws.deserialize_compact(case["token"], keys, algorithms=["EdDSA", "ES256"])
                verified += 1
            except Exception as err:  # noqa: BLE001 - every failure is reported
                failures.append(f"key set {index}: {type(err).__name__}: {err}: {case['token'][:40]}...")
    for failure in failures[:20]:
        print(failure)
    print(f"verified {verified}, failed {len(failures)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
