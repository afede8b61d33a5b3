"""Hostile input and heavy load: the control plane, processes, and the gateway's HTTP side."""
