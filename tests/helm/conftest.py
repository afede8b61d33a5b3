"""Fixtures of the chart tests: the real API server of tests/support/kubeapi.py."""

from tests.support.kubeapi import kube_api  # noqa: F401  (a fixture, registered by import)
