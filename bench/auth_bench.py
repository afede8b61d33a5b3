"""Latency token validation adds per call, with the issuer's keys cached.

Starts the real issuer the tests use (oidc-provider, tests/support/oidc_issuer.mjs), gets one
access token from it, and times `JwtVerifier.verify` (signature, claims, audience; gateway.auth)
on it, after one warm-up call that fetches the issuer's metadata and keys, two ways in one run,
interleaved: every call checking the signature (no verdicts kept: a client's first call), and
with the verdicts the gateway keeps (gateway.auth.verdicts: a client's next calls within seconds).
This is the whole of what authentication adds to a request once keys are cached (the policy check
is a few dict and fnmatch lookups).

    .venv/bin/python -m bench.auth_bench [--calls 5000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gateway.auth.tokens import JwtVerifier
from gateway.auth.verdicts import Verdicts
from tests.support.oidc import running_issuer

RESOURCE = "http://127.0.0.1:8080/api/v1/servers/time/mcp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_issuer(Path(tmp), ("bench",)) as issuer:
        token = issuer.token("bench", RESOURCE)
        verifiers = {"signature every call": JwtVerifier(issuer.url, ("ES256",), verdicts=Verdicts(seconds=0)),
                     "verdicts kept": JwtVerifier(issuer.url, ("ES256",))}
        samples: dict[str, list[float]] = {name: [] for name in verifiers}
        for verifier in verifiers.values():
            verifier.verify(token, (RESOURCE,))  # fetches metadata and keys
        for _ in range(args.calls):
            for name, verifier in verifiers.items():
                start = time.perf_counter()
                verifier.verify(token, (RESOURCE,))
                samples[name].append(time.perf_counter() - start)
    for name, values in samples.items():
        values.sort()
        print(f"token validation (ES256, cached keys, {name}), {args.calls} calls: "
              f"median {statistics.median(values) * 1e6:.1f} us, p99 {values[int(len(values) * 0.99)] * 1e6:.1f} us, "
              f"mean {statistics.fmean(values) * 1e6:.1f} us")


if __name__ == "__main__":
    main()
