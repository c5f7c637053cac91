{{/*
Names, labels, Parla's configuration file and the pod template every workload shares.

Layout
- parla.name / parla.fullname / parla.labels / parla.selectorLabels: the usual names.
- parla.roles: the workloads this release runs ("all" embedded; gateway, engine, admin distributed).
- parla.validate: refuses values that would start pods that cannot work.
- parla.toml: parla.toml for --config, from .Values.config plus the external services.
- parla.pod: the pod spec of every role (probes, security context, volumes, secrets as env).
*/}}

{{- define "parla.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "parla.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "parla.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "parla.selectorLabels" -}}
app.kubernetes.io/name: {{ include "parla.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "parla.labels" -}}
helm.sh/chart: {{ include "parla.chart" . }}
{{ include "parla.selectorLabels" . }}
app.kubernetes.io/version: {{ (.Values.image.tag | default .Chart.AppVersion) | toString | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: parla
{{- end -}}

{{/* The name of one role's objects: the fullname in embedded mode, fullname-ROLE otherwise. */}}
{{- define "parla.roleName" -}}
{{- $root := index . 0 -}}{{- $role := index . 1 -}}
{{- if eq $role "all" -}}
{{- include "parla.fullname" $root -}}
{{- else -}}
{{- printf "%s-%s" (include "parla.fullname" $root | trunc 55 | trimSuffix "-") $role -}}
{{- end -}}
{{- end -}}

{{- define "parla.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "parla.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "parla.secretName" -}}
{{- default (include "parla.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "parla.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}

{{/* The roles this release runs, as a JSON list. */}}
{{- define "parla.roles" -}}
{{- if eq .Values.mode "distributed" -}}["gateway", "engine", "admin"]{{- else -}}["all"]{{- end -}}
{{- end -}}

{{/*
Values that would start pods that cannot work are refused at render time, with the reason.
*/}}
{{- define "parla.validate" -}}
{{- if not (has .Values.mode (list "embedded" "distributed")) -}}
{{- fail (printf "mode must be \"embedded\" or \"distributed\", not %q" (toString .Values.mode)) -}}
{{- end -}}
{{- $s := .Values.secrets -}}
{{- if and $s.jwtSecret (lt (len $s.jwtSecret) 32) -}}
{{- fail "secrets.jwtSecret must be at least 32 bytes (Parla refuses a shorter one)" -}}
{{- end -}}
{{- if and $s.masterKey (ne (len (b64dec $s.masterKey)) 32) -}}
{{- fail "secrets.masterKey must be the base64 of 32 bytes (e.g. `openssl rand -base64 32`)" -}}
{{- end -}}
{{- if eq .Values.mode "distributed" -}}
{{- if not .Values.kafka.brokers -}}
{{- fail "mode=distributed needs kafka.brokers (host:port,…)" -}}
{{- end -}}
{{- if not .Values.cql.nodes -}}
{{- fail "mode=distributed needs cql.nodes (ScyllaDB or Cassandra contact points, host:port)" -}}
{{- end -}}
{{- if not (or .Values.redis.url $s.redisUrl $s.existingSecret) -}}
{{- fail "mode=distributed needs redis.url, or secrets.redisUrl when the URL carries a password" -}}
{{- end -}}
{{- if not .Values.qdrant.url -}}
{{- fail "mode=distributed needs qdrant.url: embedded vectors would live in each pod's own data dir, so a document indexed on one engine would not be found by another" -}}
{{- end -}}
{{- $engine := .Values.roles.engine -}}
{{- $most := ternary (int $engine.autoscaling.maxReplicas) (int $engine.replicas) (and $engine.autoscaling.enabled true) -}}
{{- if gt $most (int .Values.kafka.partitions) -}}
{{- fail (printf "engine replicas (up to %d) exceed kafka.partitions (%d): an engine without a partition of the inbound topic idles" $most (int .Values.kafka.partitions)) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.qdrant.url (not (hasPrefix "http" .Values.qdrant.url)) -}}
{{- fail "qdrant.url must be Qdrant's http(s):// REST address" -}}
{{- end -}}
{{- end -}}

{{/* One TOML value: strings quoted (JSON escapes are valid TOML), whole numbers as integers. */}}
{{- define "parla.tomlValue" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- . -}}
{{- else if or (kindIs "float64" .) (kindIs "float32" .) -}}
{{- if eq (float64 (int64 .)) (float64 .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "int32" .) (kindIs "uint64" .) -}}
{{- . -}}
{{- else if kindIs "slice" . -}}
[{{ range $i, $v := . }}{{ if $i }}, {{ end }}{{ include "parla.tomlValue" $v }}{{ end }}]
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) as a Parla setting: settings are strings, numbers, booleans or lists" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/*
parla.toml: .Values.config (any key of config/parla.default.toml, by section), with the external
services of distributed mode and Qdrant written over it. server.listen, store.data_dir and
cluster.role are given as flags by the pod (flags beat the file); secrets come as environment
variables (which also beat the file).
*/}}
{{- define "parla.toml" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- range $section := list "store" "cluster" "vectors" -}}
{{- if not (hasKey $cfg $section) -}}{{- $_ := set $cfg $section dict -}}{{- end -}}
{{- end -}}
{{- if eq .Values.mode "distributed" -}}
{{- $store := index $cfg "store" -}}
{{- $_ := set $store "backend" "cql" -}}
{{- $_ := set $store "cql_nodes" .Values.cql.nodes -}}
{{- $_ := set $store "cql_keyspace" .Values.cql.keyspace -}}
{{- $_ := set $store "cql_replication" .Values.cql.replication -}}
{{- if .Values.cql.username -}}{{- $_ := set $store "cql_username" .Values.cql.username -}}{{- end -}}
{{- $cluster := index $cfg "cluster" -}}
{{- $_ := set $cluster "bus" "kafka" -}}
{{- $_ := set $cluster "kafka_brokers" .Values.kafka.brokers -}}
{{- $_ := set $cluster "kafka_topic_prefix" .Values.kafka.topicPrefix -}}
{{- $_ := set $cluster "kafka_partitions" .Values.kafka.partitions -}}
{{- $_ := set $cluster "kafka_replication" .Values.kafka.replication -}}
{{- if .Values.redis.url -}}{{- $_ := set $cluster "redis_url" .Values.redis.url -}}{{- end -}}
{{- end -}}
{{- if .Values.qdrant.url -}}
{{- $vectors := index $cfg "vectors" -}}
{{- $_ := set $vectors "index" "qdrant" -}}
{{- $_ := set $vectors "qdrant_url" .Values.qdrant.url -}}
{{- $_ := set $vectors "qdrant_collection_prefix" .Values.qdrant.collectionPrefix -}}
{{- end -}}
# Rendered by the Helm chart from .Values.config; Parla's defaults fill in every key left out
# (config/parla.default.toml). Secrets are not here: they come from the Secret as PARLA__… env.
{{- range $section, $keys := $cfg }}
{{- if not (kindIs "map" $keys) }}
{{- fail (printf "config.%s must be a section (a map of Parla settings)" $section) }}
{{- end }}
{{- if $keys }}

[{{ $section }}]
{{- range $key, $value := $keys }}
{{- if kindIs "map" $value }}
{{- fail (printf "config.%s.%s: Parla's settings are one level deep" $section $key) }}
{{- end }}
{{ $key }} = {{ include "parla.tomlValue" $value }}
{{- end }}
{{- end }}
{{- end }}
{{ end -}}

{{/*
Secret keys and the settings they fill (environment beats the config file). Every reference is
optional, so an existingSecret may hold any subset of these keys.
*/}}
{{- define "parla.secretEnv" -}}
{{- $name := include "parla.secretName" . -}}
{{- range $key, $env := dict "jwt-secret" "PARLA__AUTH__JWT_SECRET" "master-key" "PARLA__SECRETS__MASTER_KEY" "cql-password" "PARLA__STORE__CQL_PASSWORD" "redis-url" "PARLA__CLUSTER__REDIS_URL" "smtp-password" "PARLA__MAIL__SMTP_PASSWORD" "llm-api-key" "PARLA__LLM__API_KEY" "embeddings-api-key" "PARLA__EMBEDDINGS__API_KEY" "qdrant-api-key" "PARLA__VECTORS__QDRANT_API_KEY" }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef:
      name: {{ $name }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- end -}}

{{- define "parla.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}

{{/*
The pod spec of one role. Called with (list $ "role" $roleValues).
*/}}
{{- define "parla.pod" -}}
{{- $root := index . 0 -}}{{- $role := index . 1 -}}{{- $rv := index . 2 -}}
{{- $v := $root.Values -}}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
serviceAccountName: {{ include "parla.serviceAccountName" $root }}
automountServiceAccountToken: {{ $v.serviceAccount.automountToken }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
containers:
  - name: parla
    image: {{ include "parla.image" $root | quote }}
    imagePullPolicy: {{ $v.image.pullPolicy }}
    args:
      - serve
      - --config
      - /etc/parla/parla.toml
      - --listen
      - "0.0.0.0:{{ $v.containerPort }}"
      - --data-dir
      - /var/lib/parla
      - --role
      - {{ $role }}
    ports:
      - name: http
        containerPort: {{ $v.containerPort }}
        protocol: TCP
      - name: ops
        containerPort: {{ $v.opsPort }}
        protocol: TCP
    env:
      - name: RUST_LOG
        value: {{ $v.logLevel | quote }}
      # /readyz and /metrics on their own port, off the public listener.
      - name: PARLA__SERVER__OPS_LISTEN
        value: "0.0.0.0:{{ $v.opsPort }}"
      {{- if ne $role "all" }}
      # The node's name in the cluster (Redis channels, leases, logs): the pod's name.
      - name: PARLA__CLUSTER__NODE_ID
        valueFrom:
          fieldRef:
            fieldPath: metadata.name
      {{- end }}
      {{- include "parla.secretEnv" $root | trim | nindent 6 }}
      {{- with $v.extraEnv }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.extraEnvFrom }}
    envFrom:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    startupProbe:
      httpGet:
        path: {{ $v.probes.livenessPath }}
        port: http
      periodSeconds: {{ $v.probes.startup.periodSeconds }}
      failureThreshold: {{ $v.probes.startup.failureThreshold }}
    livenessProbe:
      httpGet:
        path: {{ $v.probes.livenessPath }}
        port: http
      periodSeconds: {{ $v.probes.liveness.periodSeconds }}
      timeoutSeconds: {{ $v.probes.liveness.timeoutSeconds }}
      failureThreshold: {{ $v.probes.liveness.failureThreshold }}
    readinessProbe:
      httpGet:
        path: {{ $v.probes.readinessPath }}
        port: ops
      periodSeconds: {{ $v.probes.readiness.periodSeconds }}
      timeoutSeconds: {{ $v.probes.readiness.timeoutSeconds }}
      failureThreshold: {{ $v.probes.readiness.failureThreshold }}
    resources:
      {{- toYaml $rv.resources | nindent 6 }}
    securityContext:
      {{- toYaml $v.securityContext | nindent 6 }}
    volumeMounts:
      - name: config
        mountPath: /etc/parla
        readOnly: true
      - name: data
        mountPath: /var/lib/parla
      - name: tmp
        mountPath: /tmp
      {{- with $v.extraVolumeMounts }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "parla.fullname" $root }}
  {{- if ne $role "all" }}
  # Distributed nodes keep nothing durable in the data dir (the store is CQL, vectors are in
  # Qdrant, the JWT secret and master key come from the Secret): scratch space only.
  - name: data
    emptyDir:
      sizeLimit: {{ $v.distributedDataDirSizeLimit }}
  {{- else if not $v.persistence.enabled }}
  - name: data
    emptyDir: {}
  {{- end }}
  - name: tmp
    emptyDir:
      sizeLimit: {{ $v.tmpSizeLimit }}
  {{- with $v.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with ($rv.nodeSelector | default $v.nodeSelector) }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($rv.tolerations | default $v.tolerations) }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($rv.affinity | default $v.affinity) }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with ($rv.topologySpreadConstraints | default $v.topologySpreadConstraints) }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Annotations that restart pods when their configuration or secret changes. */}}
{{- define "parla.podAnnotations" -}}
checksum/config: {{ include "parla.toml" . | sha256sum }}
{{- if not .Values.secrets.existingSecret }}
checksum/secret: {{ toJson .Values.secrets | sha256sum }}
{{- end }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
