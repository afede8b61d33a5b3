"""`nmcp up`: the whole system on one machine, with the cluster's brain and no cluster.

The pieces stand in for what Kubernetes and Metacontroller do in a cluster, and nothing more:

* `manifests` reads and validates the YAML a user would `kubectl apply` (the API server's job);
* `store` keeps those objects in memory with their annotations and status (etcd's job);
* `controller` builds the exact Metacontroller request bodies and selects related objects by the
  customize hooks' rules (Metacontroller's job);
* `observe` presents local processes as observed Pods, and `pods` runs the processes the hooks
  ask for, restarting crashed ones with back-off (the kubelet's job);
* `reconcile` is the loop that calls the hooks' pure functions and applies what they return;
* `runtime` is the gateway's `Runtime` over all of it.

Every lifecycle decision (phases, conditions, admission, idle timeouts) is made by `hooks.sync`,
the same code the webhooks serve; this package only feeds it and carries out its answers.
"""
