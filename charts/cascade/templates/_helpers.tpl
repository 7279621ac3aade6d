{{/*
Labels on every object: who manages it, which release, plus commonLabels.
*/}}
{{- define "cascade.labels" -}}
app.kubernetes.io/part-of: cascade
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels of every function pod (NetworkPolicy, PodMonitor).
*/}}
{{- define "cascade.functionSelector" -}}
app.kubernetes.io/part-of: cascade
app.kubernetes.io/component: function
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
A function's settings: functionDefaults with the function's own values merged over them.
Call with (dict "root" $ "name" $name "spec" $spec); returns YAML (use fromYaml).
*/}}
{{- define "cascade.function" -}}
{{- $merged := mergeOverwrite (deepCopy .root.Values.functionDefaults) (deepCopy .spec) -}}
{{- toYaml $merged -}}
{{- end -}}

{{/*
Image reference of a function: registry/repository:tag, or repository@sha256:... when the tag is
a bare digest. Call with (dict "root" $ "image" $fn.image).
*/}}
{{- define "cascade.image" -}}
{{- $registry := .root.Values.image.registry -}}
{{- $tag := .image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- $repository := .image.repository -}}
{{- if $registry }}{{ $repository = printf "%s/%s" (trimSuffix "/" $registry) $repository }}{{ end -}}
{{- if hasPrefix "sha256:" $tag -}}
{{ printf "%s@%s" $repository $tag }}
{{- else -}}
{{ printf "%s:%s" $repository $tag }}
{{- end -}}
{{- end -}}

{{/*
Knative Destination of the dead-letter sink, or nothing when there is none.
*/}}
{{- define "cascade.deadLetterSink" -}}
{{- with .Values.deadLetterSink.function -}}
deadLetterSink:
  ref:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: {{ . }}
  {{- with $.Values.deadLetterSink.path }}
  uri: {{ . }}
  {{- end }}
  {{- if $.Values.security.oidc.enabled }}
  audience: {{ include "cascade.audience" (dict "root" $ "name" .) }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/*
The OIDC audience of a function: Knative Serving announces none for a Service, so the chart
names one the way Knative names its own (group/kind/namespace/name) and puts it on the Trigger
(subscriber.audience) and the function (CASCADE_OIDC_AUDIENCE). Call with (dict "root" $ "name" n).
*/}}
{{- define "cascade.audience" -}}
{{ printf "serving.knative.dev/service/%s/%s" .root.Release.Namespace .name }}
{{- end -}}

{{/*
The OIDC subject a Trigger's deliveries, replies and dead letters carry: Knative's per-Trigger
service account, <trigger>-oidc-eventing.knative.dev-trigger (validated to fit 63 characters,
beyond which Knative shortens it with a hash). Call with (dict "root" $ "trigger" name).
*/}}
{{- define "cascade.triggerSubject" -}}
{{ printf "system:serviceaccount:%s:%s-oidc-eventing.knative.dev-trigger" .root.Release.Namespace .trigger }}
{{- end -}}

{{/*
Names of the Triggers whose requests a function accepts: its own, and every Trigger when it is
the dead-letter sink (the dispatcher sends a dead letter in the failed Trigger's name).
Returns a comma list. Call with (dict "root" $ "name" n).
*/}}
{{- define "cascade.sendingTriggers" -}}
{{- $names := list -}}
{{- range $fn, $spec := .root.Values.functions -}}
{{- if or (eq $fn $.name) (eq $.name $.root.Values.deadLetterSink.function) -}}
{{- range $key, $_ := ($spec.consumes | default dict) -}}
{{- $names = append $names (printf "%s-%s" $fn $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $names | join "," -}}
{{- end -}}

{{/*
Checks that span several values (the schema checks each value alone). Fails with a message
that names the value to change.
*/}}
{{- define "cascade.validate" -}}
{{- $functions := .Values.functions -}}
{{- with .Values.deadLetterSink.function -}}
{{- if not (hasKey $functions .) -}}
{{- fail (printf "deadLetterSink.function: %q is not a key of functions (have: %s)" . (keys $functions | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- if ne .Values.broker.class "Kafka" -}}
{{- if or .Values.kafka.strimzi.enabled .Values.kafka.bootstrapServers -}}
{{- fail (printf "kafka: set kafka.strimzi.enabled=false and no kafka.bootstrapServers with broker.class %s (its events live in NATS JetStream, not Kafka)" .Values.broker.class) -}}
{{- end -}}
{{- else if and (not .Values.kafka.strimzi.enabled) (not .Values.kafka.bootstrapServers) -}}
{{- fail "kafka.bootstrapServers: required when kafka.strimzi.enabled is false (the Broker needs a Kafka)" -}}
{{- end -}}
{{- if and .Values.kafka.strimzi.enabled .Values.kafka.bootstrapServers -}}
{{- fail "kafka.bootstrapServers: set it only with kafka.strimzi.enabled=false (it would bypass the Strimzi cluster the chart creates)" -}}
{{- end -}}
{{- if and .Values.kafka.strimzi.enabled (gt (int .Values.kafka.topic.replicationFactor) (int .Values.kafka.strimzi.replicas)) -}}
{{- fail (printf "kafka.topic.replicationFactor: %d is more than the %d Kafka node(s) of kafka.strimzi.replicas" (int .Values.kafka.topic.replicationFactor) (int .Values.kafka.strimzi.replicas)) -}}
{{- end -}}
{{- if .Values.tests.enabled -}}
{{- $order := get $functions .Values.tests.orderFunction -}}
{{- if not $order -}}
{{- fail (printf "tests.orderFunction: %q is not a key of functions; set tests.enabled=false for a chart without an order API" .Values.tests.orderFunction) -}}
{{- end -}}
{{- if not $order.public -}}
{{- fail (printf "tests.orderFunction: %q must be public (functions.%s.public=true) for the helm test to reach POST /orders" .Values.tests.orderFunction .Values.tests.orderFunction) -}}
{{- end -}}
{{- end -}}
{{- if .Values.security.oidc.enabled -}}
{{- if ne .Values.sink.mode "sinkBinding" -}}
{{- fail "security.oidc.enabled: needs sink.mode=sinkBinding (the SinkBinding is the publishing function's OIDC identity; with sink.mode=env it has none)" -}}
{{- end -}}
{{- range $name, $spec := $functions -}}
{{- range $key, $_ := ($spec.consumes | default dict) -}}
{{- $account := printf "%s-%s-oidc-eventing.knative.dev-trigger" $name $key -}}
{{- if gt (len $account) 63 -}}
{{- fail (printf "functions.%s.consumes.%s: with security.oidc.enabled a Trigger name may have at most 29 characters (Knative names its OIDC service account %q, over 63 characters, and shortens it with a hash the chart cannot compute); shorten the subscription's key" $name $key $account) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $reserved := list "CASCADE_HOST" "CASCADE_DATA_DIR" "CASCADE_WORKERS" "CASCADE_THREADS" "CASCADE_LOG_LEVEL" "DATABASE_URL" "K_SINK" "PORT" "OTEL_EXPORTER_OTLP_ENDPOINT" "OTEL_TRACES_SAMPLER" "OTEL_TRACES_SAMPLER_ARG" "OTEL_RESOURCE_ATTRIBUTES" "CASCADE_ADMIN_ROUTES" "CASCADE_OIDC_AUDIENCE" "CASCADE_OIDC_ISSUER" "CASCADE_OIDC_JWKS_URL" "CASCADE_OIDC_ALLOWED_SUBJECTS" "CASCADE_PUBLISH_TOKEN_FILE" "SSL_CERT_FILE" -}}
{{- $envs := dict "functionDefaults.env" (.Values.functionDefaults.env | default dict) -}}
{{- range $name, $spec := $functions -}}
{{- $_ := set $envs (printf "functions.%s.env" $name) ($spec.env | default dict) -}}
{{- $_ := set $envs (printf "functions.%s.secretEnv" $name) ($spec.secretEnv | default dict) -}}
{{- end -}}
{{- range $where, $env := $envs -}}
{{- range $key, $value := $env -}}
{{- if has $key $reserved -}}
{{- fail (printf "%s.%s: set by the chart itself (from workers, threads, dataDir, logLevel, adminRoutes, database, sink, observability or security); change that value instead" $where $key) -}}
{{- end -}}
{{- if and (hasSuffix ".env" $where) (regexMatch "(?i)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)" $key) -}}
{{- fail (printf "%s.%s: looks like a secret; values are stored in plain text, so put it in a Secret and reference it from secretEnv" $where $key) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $triggers := dict -}}
{{- range $name, $spec := $functions -}}
{{- if eq $name "queue-proxy" -}}
{{- fail "functions.queue-proxy: the name is reserved by Knative (its sidecar); rename the function" -}}
{{- end -}}
{{- $fn := include "cascade.function" (dict "root" $ "name" $name "spec" $spec) | fromYaml -}}
{{- if and (not $.Values.database.secretName) (ne (int $fn.scaling.maxScale) 1) -}}
{{- fail (printf "functions.%s.scaling.maxScale: must be 1 without a database (database.secretName is empty, so state is SQLite inside each pod); set database.secretName or maxScale: 1" $name) -}}
{{- end -}}
{{- if and (gt (int $fn.scaling.maxScale) 0) (gt (int $fn.scaling.minScale) (int $fn.scaling.maxScale)) -}}
{{- fail (printf "functions.%s.scaling.minScale: %d is more than maxScale %d" $name (int $fn.scaling.minScale) (int $fn.scaling.maxScale)) -}}
{{- end -}}
{{- range $key, $sub := ($spec.consumes | default dict) -}}
{{- $trigger := printf "%s-%s" $name $key -}}
{{- if hasKey $triggers $trigger -}}
{{- fail (printf "functions.%s.consumes.%s: Trigger name %q is also made by %s; rename one subscription" $name $key $trigger (get $triggers $trigger)) -}}
{{- end -}}
{{- $_ := set $triggers $trigger (printf "functions.%s.consumes.%s" $name $key) -}}
{{- if gt (len $trigger) 253 -}}
{{- fail (printf "functions.%s.consumes.%s: Trigger name %q is longer than 253 characters" $name $key $trigger) -}}
{{- end -}}
{{- range $type := ($spec.replyTypes | default list) -}}
{{- if eq $type $sub.type -}}
{{- fail (printf "functions.%s.consumes.%s: %s is also in functions.%s.replyTypes, so the function would receive its own replies forever" $name $key $type $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The Kafka broker's credentials Secret when the chart's Strimzi Kafka is secure, and its KafkaUser.
*/}}
{{- define "cascade.kafkaAuthSecret" -}}
{{ printf "%s-kafka-auth" .Values.broker.name }}
{{- end -}}
{{- define "cascade.kafkaUser" -}}
{{ printf "%s-knative-broker" .Values.broker.name }}
{{- end -}}

{{/*
NetworkPolicy egress rules shared by several policies. Call with .Values.networkPolicy.
*/}}
{{- define "cascade.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .dns.podLabels | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end -}}
{{- define "cascade.apiServerEgress" -}}
# the Kubernetes API server (its endpoints: `kubectl get endpoints kubernetes`)
- ports:
    {{- range .apiServer.ports }}
    - protocol: TCP
      port: {{ . }}
    {{- end }}
  {{- with .apiServer.cidrs }}
  to:
    {{- range . }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  {{- end }}
{{- end -}}
