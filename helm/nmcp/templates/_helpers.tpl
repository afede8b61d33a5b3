{{/*
nmcp.name: the chart name (or nameOverride), used as app.kubernetes.io/name.
*/}}
{{- define "nmcp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
nmcp.fullname: the prefix of every object name. The release name alone when it already contains
the chart name ("nmcp" -> nmcp-hooks), else "<release>-nmcp". Cut to 50 characters so that
"<fullname>-metacontroller" (the longest suffix) still fits a 63-character name.
*/}}
{{- define "nmcp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "nmcp.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
nmcp.hooks.fullname: name of the hooks' Deployment, Service, ServiceAccount, PDB and policy.
*/}}
{{- define "nmcp.hooks.fullname" -}}
{{- printf "%s-hooks" (include "nmcp.fullname" .) -}}
{{- end -}}

{{/*
nmcp.gateway.fullname: name of the gateway's Deployment, Service, Role(s) and policies.
*/}}
{{- define "nmcp.gateway.fullname" -}}
{{- printf "%s-gateway" (include "nmcp.fullname" .) -}}
{{- end -}}

{{/*
nmcp.gateway.serviceAccountName: the gateway's ServiceAccount, the subject of its RBAC.
*/}}
{{- define "nmcp.gateway.serviceAccountName" -}}
{{- default (include "nmcp.gateway.fullname" .) .Values.gateway.serviceAccount.name -}}
{{- end -}}

{{/*
nmcp.labels: labels on every object (pass a dict with "root" and "component").
*/}}
{{- define "nmcp.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "nmcp.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: nmcp
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
nmcp.selectorLabels: the immutable subset that Deployments, Services, PDBs and NetworkPolicies
select on (pass a dict with "root" and "component"). Distinct from the labels of MCP server Pods
(app.kubernetes.io/name: mcp-server), so no selector of ours ever matches them by accident.
*/}}
{{- define "nmcp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nmcp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
nmcp.image: the image reference; a digest wins over a tag, an empty tag means appVersion.
*/}}
{{- define "nmcp.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
nmcp.allNamespaces: "true" when the gateway serves every namespace (gateway.namespaces is ["*"]).
Fails when "*" is mixed with names: that list would mean two different things at once.
*/}}
{{- define "nmcp.allNamespaces" -}}
{{- $ns := .Values.gateway.namespaces | default (list) -}}
{{- if has "*" $ns -}}
{{- if gt (len $ns) 1 -}}
{{- fail (printf "gateway.namespaces: \"*\" (every namespace) cannot be combined with names, got %v" $ns) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/*
nmcp.servedNamespaces: the namespaces the gateway serves, as a JSON list (use with fromJsonArray):
gateway.namespaces, or the release namespace when it is empty; an empty list for "*".
Fails on duplicates, which would render the same Role twice.
*/}}
{{- define "nmcp.servedNamespaces" -}}
{{- if include "nmcp.allNamespaces" . -}}
{{- list | toJson -}}
{{- else -}}
{{- $ns := .Values.gateway.namespaces | default (list .Release.Namespace) -}}
{{- if ne (len $ns) (len (uniq $ns)) -}}
{{- fail (printf "gateway.namespaces lists a namespace twice: %v" $ns) -}}
{{- end -}}
{{- toJson $ns -}}
{{- end -}}
{{- end -}}

{{/*
nmcp.hooks.url: the URL Metacontroller calls for one hook (pass a dict with "root" and "path").
The host is <hooks Service>.<release namespace>, resolved through cluster DNS from
Metacontroller's namespace.
*/}}
{{- define "nmcp.hooks.url" -}}
{{- printf "http://%s.%s:%v%s" (include "nmcp.hooks.fullname" .root) .root.Release.Namespace .root.Values.hooks.service.port .path -}}
{{- end -}}

{{/*
nmcp.pdb.apiVersion: policy/v1 from Kubernetes 1.21 on (v1beta1 is gone in 1.25), v1beta1 below.
*/}}
{{- define "nmcp.pdb.apiVersion" -}}
{{- if semverCompare ">=1.21-0" .Capabilities.KubeVersion.Version -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end -}}

{{/*
nmcp.validate: fails on value combinations that cannot work; included once by NOTES-independent
templates (the hooks Deployment) so that `helm template` fails too.
*/}}
{{- define "nmcp.validate" -}}
{{- $_ := include "nmcp.servedNamespaces" . -}}
{{- if lt (int .Values.hooks.replicas) 1 -}}
{{- fail "hooks.replicas must be at least 1: without hooks nothing reconciles" -}}
{{- end -}}
{{- if and .Values.hooks.podDisruptionBudget.enabled (ge (int .Values.hooks.podDisruptionBudget.minAvailable) (int .Values.hooks.replicas)) -}}
{{- fail (printf "hooks.podDisruptionBudget.minAvailable (%v) must be lower than hooks.replicas (%v), or no node could ever be drained; disable the PDB or add replicas" .Values.hooks.podDisruptionBudget.minAvailable .Values.hooks.replicas) -}}
{{- end -}}
{{- if and (gt (int .Values.gateway.replicas) 1) (ne .Values.gateway.service.sessionAffinity "ClientIP") (not .Values.gateway.stickySessionsUpstream) -}}
{{- fail (printf "gateway.replicas is %v, but MCP sessions live in one gateway process: set gateway.service.sessionAffinity=ClientIP, or gateway.stickySessionsUpstream=true if your ingress pins sessions (see values.yaml)" .Values.gateway.replicas) -}}
{{- end -}}
{{- if not (has .Values.gateway.service.sessionAffinity (list "None" "ClientIP")) -}}
{{- fail (printf "gateway.service.sessionAffinity must be None or ClientIP, got %q" .Values.gateway.service.sessionAffinity) -}}
{{- end -}}
{{- if and .Values.networkPolicy.enabled .Values.networkPolicy.serverEgress.enabled (include "nmcp.allNamespaces" .) -}}
{{- fail "networkPolicy.serverEgress needs gateway.namespaces to list the namespaces (with \"*\" there is no namespace to put the policy in): list them, or restrict egress with your own policies" -}}
{{- end -}}
{{- if and .Values.metacontroller.rbac.bind (not .Values.metacontroller.rbac.create) -}}
{{- fail "metacontroller.rbac.bind needs metacontroller.rbac.create: there is no ClusterRole to bind" -}}
{{- end -}}
{{- if not .Values.image.repository -}}
{{- fail "image.repository is empty: build the image from the Dockerfile and name it here" -}}
{{- end -}}
{{- end -}}

{{/*
nmcp.gateway.rules: the gateway's least privilege, the same in its Roles and its ClusterRole:
read servers, pools and access policies, patch MCPServers (demand and activity annotations only; it never writes
status, Metacontroller owns that), read Pods, attach to them (stdio servers), read their logs.
*/}}
{{- define "nmcp.gateway.rules" -}}
- apiGroups: [nmcp.nwrx.io]
  resources: [mcpservers, mcppools, mcpaccesspolicies]
  verbs: [get, list, watch]
- apiGroups: [nmcp.nwrx.io]
  resources: [mcpservers]
  verbs: [patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Attach over SPDY is a POST (verb create); over WebSocket it is a GET upgrade, authorized as
# get (newer API servers check create as well). Both verbs name the same one capability.
- apiGroups: [""]
  resources: [pods/attach]
  verbs: [create, get]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
{{- end -}}
