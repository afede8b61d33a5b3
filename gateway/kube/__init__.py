"""The Kubernetes side of the gateway: API access, a watch-backed cache, demand signals, attach.

`client` is the one module that talks to the Kubernetes API; `config` finds the cluster,
`cache` keeps MCPServers and Pods up to date from watches, `demand` decides and writes the
annotations the hooks read, and `attach` speaks the channel framing of `pods/attach`.
`gateway.runtimes.kubernetes` puts them together behind the `Runtime` protocol.
"""
