"""Latency token validation adds per call, with the issuer's keys cached.

Starts the real issuer the tests use (oidc-provider, tests/support/oidc_issuer.mjs), gets one
access token from it, and times `JwtVerifier.verify` (signature, claims, audience; gateway.auth)
on it, after one warm-up call that fetches the issuer's metadata and keys. This is the whole of
what authentication adds to a request once keys are cached (the policy check is a few dict and
fnmatch lookups).

    .venv/bin/python -m bench.auth_bench [--calls 5000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from gateway.auth.tokens import JwtVerifier
from tests.support.oidc import running_issuer

RESOURCE = "http://127.0.0.1:8080/api/v1/servers/time/mcp"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_issuer(Path(tmp), ("bench",)) as issuer:
        token = issuer.token("bench", RESOURCE)
        verifier = JwtVerifier(issuer.url, ("ES256",))
        verifier.verify(token, (RESOURCE,))  # fetches metadata and keys
        samples = []
        for _ in range(args.calls):
            start = time.perf_counter()
            verifier.verify(token, (RESOURCE,))
            samples.append(time.perf_counter() - start)
    samples.sort()
    print(f"token validation (ES256, cached keys), {args.calls} calls: "
          f"median {statistics.median(samples) * 1e6:.0f} us, p99 {samples[int(len(samples) * 0.99)] * 1e6:.0f} us, "
          f"mean {statistics.fmean(samples) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
