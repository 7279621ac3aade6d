#!/usr/bin/env bash
# Prepare a Kubernetes cluster for Cascade, with the versions pinned in k8s/versions.env:
#
#   Knative Serving + Kourier    functions as Knative Services; the ingress on the host's port 80
#   Knative Eventing + Kafka     the Broker class Kafka (controller and data plane)
#   Strimzi                      the operator that runs the chart's single-node KRaft Kafka
#   (--broker nats instead: Knative's channel-based broker, eventing-natss's NatsJetStreamChannel
#    (alpha upstream) and a NATS server with JetStream (namespace nats-io); no Kafka, no Strimzi)
#   PostgreSQL                   the functions' state (namespace postgres)
#   OTel Collector + Jaeger      traces (namespace observability)
#   kube-prometheus-stack        Prometheus + Grafana (namespace monitoring)
#
# Usage: k8s/install.sh [--create-cluster] [--deploy] [--namespace NS] [--context CTX]
#                       [--broker kafka|nats]
#   --create-cluster  first create the kind cluster `cascade` from k8s/kind-config.yaml
#   --broker          kafka (default) or nats; with nats the chart is installed with
#                     -f charts/cascade/ci/nats-values.yaml (broker.class MTChannelBasedBroker)
#   --deploy          then install the chart (release `cascade`, images already in the cluster),
#                     give the Kafka broker its login, wait until Kafka, the KafkaUser, the
#                     Broker, every Trigger, the SinkBinding and every Service are Ready, and run
#                     `helm test` (helm --wait does not wait for custom resources)
#   --namespace       where the chart goes (default: default); labelled to enforce the
#                     "restricted" Pod Security Standard, and given the cascade-postgres Secret
#   --context         kubectl context (default: kind-cascade)
#
# Needs Docker and kind on your machine (kubectl and helm come from scripts/tools.sh when they
# are not installed), and internet access for the release manifests, charts and images.
# Safe to run again: every step applies or upgrades, generated passwords are kept.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=k8s/versions.env
source "$ROOT/k8s/versions.env"

CLUSTER=cascade
CONTEXT="kind-$CLUSTER"
NAMESPACE=default
CREATE=false
DEPLOY=false
BROKER_KIND=kafka
while [[ $# -gt 0 ]]; do
    case "$1" in
        --create-cluster) CREATE=true ;;
        --deploy) DEPLOY=true ;;
        --namespace) NAMESPACE="${2:?--namespace needs a value}"; shift ;;
        --context) CONTEXT="${2:?--context needs a value}"; shift ;;
        --broker) BROKER_KIND="${2:?--broker needs kafka or nats}"; shift ;;
        -h | --help) sed -n '2,29p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ "$BROKER_KIND" == kafka || "$BROKER_KIND" == nats ]] \
    || { echo "install.sh: --broker must be kafka or nats, not '$BROKER_KIND'" >&2; exit 2; }

step() { printf '\n==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

# ------------------------------------------------------------------ prerequisites

if ! command -v kubectl >/dev/null || ! command -v helm >/dev/null; then
    "$ROOT/scripts/tools.sh" helm
    PATH="$ROOT/.tools/bin:$PATH"
fi
if [[ "$CREATE" == true ]]; then
    command -v docker >/dev/null || die "docker is not installed: kind runs Kubernetes in Docker containers (https://docs.docker.com/get-docker/)"
    docker info >/dev/null 2>&1 || die "the Docker daemon is not running (docker info failed); start Docker and run make cluster again"
    command -v kind >/dev/null || die "kind is not installed (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
fi

K=(kubectl --context "$CONTEXT")
H=(helm --kube-context "$CONTEXT")

# wait_ready NAMESPACE: every Deployment Available and every StatefulSet rolled out
wait_ready() {
    "${K[@]}" -n "$1" wait deployment --all --for=condition=Available --timeout=600s
    local sts
    for sts in $("${K[@]}" -n "$1" get statefulset -o name); do
        "${K[@]}" -n "$1" rollout status "$sts" --timeout=600s
    done
}

# ensure_secret NAMESPACE NAME KEY=VALUE...: create the Secret unless it exists (so a password
# generated on the first run survives later runs). The values travel on kubectl's stdin (printf
# is a shell builtin), never on a command line another user could read in the process list.
ensure_secret() {
    local namespace="$1" name="$2"
    shift 2
    if "${K[@]}" -n "$namespace" get secret "$name" >/dev/null 2>&1; then
        echo "secret $namespace/$name exists; kept"
        return
    fi
    printf '%s\n' "$@" |
        "${K[@]}" -n "$namespace" create secret generic "$name" --from-env-file=/dev/stdin
}

# kafka_auth_secret NAMESPACE CLUSTER USER SECRET: the Kafka broker's login in Knative's format
# (protocol, sasl.mechanism, ca.crt, user, password), from the Secrets Strimzi wrote for the
# KafkaUser and the cluster CA. The base64 values are copied as they are, through stdin.
kafka_auth_secret() {
    local namespace="$1" cluster="$2" user="$3" secret="$4" password ca
    password="$("${K[@]}" -n "$namespace" get secret "$user" -o jsonpath='{.data.password}')"
    ca="$("${K[@]}" -n "$namespace" get secret "$cluster-cluster-ca-cert" -o jsonpath='{.data.ca\.crt}')"
    [[ -n "$password" && -n "$ca" ]] || die "the Secrets of KafkaUser $user or of the $cluster cluster CA are missing"
    printf '{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "%s", "namespace": "%s"},
 "stringData": {"protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "user": "%s"},
 "data": {"password": "%s", "ca.crt": "%s"}}\n' "$secret" "$namespace" "$user" "$password" "$ca" |
        "${K[@]}" apply -f -
}

ensure_namespace() {
    "${K[@]}" create namespace "$1" --dry-run=client -o yaml | "${K[@]}" apply -f -
}

password() { head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24; }

# ------------------------------------------------------------------ cluster

if [[ "$CREATE" == true ]]; then
    if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        step "kind cluster $CLUSTER exists; using it"
    else
        step "creating kind cluster $CLUSTER ($KIND_NODE_IMAGE)"
        kind create cluster --name "$CLUSTER" --config "$ROOT/k8s/kind-config.yaml" --image "$KIND_NODE_IMAGE"
    fi
fi
"${K[@]}" cluster-info >/dev/null || die "cannot reach the cluster of context $CONTEXT"

# ------------------------------------------------------------------ Knative Serving + Kourier

SERVING="https://github.com/knative/serving/releases/download/knative-v$KNATIVE_SERVING_VERSION"
step "Knative Serving $KNATIVE_SERVING_VERSION"
"${K[@]}" apply -f "$SERVING/serving-crds.yaml"
"${K[@]}" wait --for=condition=Established crd -l knative.dev/crd-install=true --timeout=120s
"${K[@]}" apply -f "$SERVING/serving-core.yaml"
wait_ready knative-serving

step "Kourier $KNATIVE_KOURIER_VERSION (ingress on NodePort 31080 = the host's port 80)"
"${K[@]}" apply -f "https://github.com/knative-extensions/net-kourier/releases/download/knative-v$KNATIVE_KOURIER_VERSION/kourier.yaml"
wait_ready kourier-system
"${K[@]}" -n kourier-system patch service kourier \
    -p '{"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 31080}]}}'
"${K[@]}" -n knative-serving patch configmap/config-network --type merge \
    -p '{"data": {"ingress-class": "kourier.ingress.networking.knative.dev"}}'
# <service>.<namespace>.127.0.0.1.sslip.io resolves to 127.0.0.1, where kind publishes Kourier
"${K[@]}" -n knative-serving patch configmap/config-domain --type merge \
    -p '{"data": {"127.0.0.1.sslip.io": ""}}'
# Images loaded into kind (kind load, skaffold) exist in no registry: skip tag resolution for
# them. Dev clusters only.
"${K[@]}" -n knative-serving patch configmap/config-deployment --type merge \
    -p '{"data": {"registries-skipping-tag-resolving": "kind.local,ko.local,dev.local,docker.io,index.docker.io"}}'
# restricted defaults for every Knative pod (the chart sets them on its containers anyway)
"${K[@]}" -n knative-serving patch configmap/config-features --type merge \
    -p '{"data": {"secure-pod-defaults": "enabled"}}'

# ------------------------------------------------------------------ Knative Eventing + Kafka broker

EVENTING="https://github.com/knative/eventing/releases/download/knative-v$KNATIVE_EVENTING_VERSION"
step "Knative Eventing $KNATIVE_EVENTING_VERSION"
"${K[@]}" apply -f "$EVENTING/eventing-crds.yaml"
"${K[@]}" wait --for=condition=Established crd -l knative.dev/crd-install=true --timeout=120s
"${K[@]}" apply -f "$EVENTING/eventing-core.yaml"
wait_ready knative-eventing

if [[ "$BROKER_KIND" == kafka ]]; then
    KAFKA_BROKER="https://github.com/knative-extensions/eventing-kafka-broker/releases/download/knative-v$KNATIVE_KAFKA_BROKER_VERSION"
    step "Knative Kafka broker $KNATIVE_KAFKA_BROKER_VERSION (controller + data plane)"
    "${K[@]}" apply -f "$KAFKA_BROKER/eventing-kafka-controller.yaml"
    wait_ready knative-eventing
    "${K[@]}" apply -f "$KAFKA_BROKER/eventing-kafka-broker.yaml"
    wait_ready knative-eventing

    # -------------------------------------------------------------- Strimzi

    step "Strimzi $STRIMZI_VERSION (runs the chart's Kafka $KAFKA_VERSION in any namespace)"
    "${H[@]}" upgrade --install strimzi oci://quay.io/strimzi-helm/strimzi-kafka-operator \
        --version "$STRIMZI_VERSION" --namespace strimzi --create-namespace \
        -f "$ROOT/k8s/strimzi-values.yaml" --wait --timeout 10m
else
    # -------------------------------------------------------------- NATS JetStream channel
    step "Knative's channel-based broker (MTChannelBasedBroker) $KNATIVE_EVENTING_VERSION"
    "${K[@]}" apply -f "$EVENTING/mt-channel-broker.yaml"
    wait_ready knative-eventing

    step "NATS server with JetStream ($NATS_IMAGE, namespace nats-io)"
    ensure_namespace nats-io
    "${K[@]}" apply -f "$ROOT/k8s/nats.yaml"
    "${K[@]}" -n nats-io rollout status statefulset/nats --timeout=600s

    # The dispatcher reads its NATS address from config-nats (eventing-natss's config/broker).
    NATSS="https://github.com/knative-extensions/eventing-natss"
    step "eventing-natss $KNATIVE_NATSS_VERSION: NatsJetStreamChannel (alpha upstream)"
    "${K[@]}" apply -f "https://raw.githubusercontent.com/knative-extensions/eventing-natss/knative-v$KNATIVE_NATSS_VERSION/config/broker/config-nats.yaml"
    "${K[@]}" apply -f "$NATSS/releases/download/knative-v$KNATIVE_NATSS_VERSION/eventing-jsm.yaml"
    "${K[@]}" wait --for=condition=Established crd/natsjetstreamchannels.messaging.knative.dev --timeout=120s
    wait_ready knative-eventing
fi

# ------------------------------------------------------------------ PostgreSQL

step "PostgreSQL ($POSTGRES_IMAGE, namespace postgres)"
ensure_namespace postgres
DB_PASSWORD="$("${K[@]}" -n postgres get secret postgres-credentials -o jsonpath='{.data.password}' 2>/dev/null | base64 -d || true)"
[[ -n "$DB_PASSWORD" ]] || DB_PASSWORD="$(password)"
ensure_secret postgres postgres-credentials "password=$DB_PASSWORD"
"${K[@]}" apply -f "$ROOT/k8s/postgres.yaml"
"${K[@]}" -n postgres rollout status statefulset/postgres --timeout=600s

# ------------------------------------------------------------------ tracing: collector + Jaeger

step "Jaeger ($JAEGER_IMAGE) and the OpenTelemetry Collector (chart $OTEL_COLLECTOR_CHART_VERSION)"
ensure_namespace observability
"${K[@]}" apply -f "$ROOT/k8s/jaeger.yaml"
"${H[@]}" upgrade --install otel-collector opentelemetry-collector \
    --repo https://open-telemetry.github.io/opentelemetry-helm-charts \
    --version "$OTEL_COLLECTOR_CHART_VERSION" --namespace observability \
    -f "$ROOT/k8s/otel-collector-values.yaml" --wait --timeout 10m
wait_ready observability
# Knative's own spans (activator, queue-proxy, the Kafka broker's receiver and dispatcher) join
# the functions' traces: OTLP/HTTP to the collector. Knative samples parentBased(ratio), so a
# trace the order API started (sampled) is always followed.
for ns in knative-serving knative-eventing; do
    "${K[@]}" -n "$ns" patch configmap/config-observability --type merge -p '{"data": {
        "tracing-protocol": "http/protobuf",
        "tracing-endpoint": "http://otel-collector.observability.svc.cluster.local:4318/v1/traces",
        "tracing-sampling-rate": "1"}}'
done
# The Kafka broker's data plane reads config-observability only when it starts: restart it.
if [[ "$BROKER_KIND" == kafka ]]; then
    "${K[@]}" -n knative-eventing rollout restart deployment/kafka-broker-receiver statefulset/kafka-broker-dispatcher
    "${K[@]}" -n knative-eventing rollout status deployment/kafka-broker-receiver --timeout=600s
    "${K[@]}" -n knative-eventing rollout status statefulset/kafka-broker-dispatcher --timeout=600s
fi

# ------------------------------------------------------------------ metrics: Prometheus + Grafana

step "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_VERSION (namespace monitoring)"
ensure_namespace monitoring
ensure_secret monitoring grafana-admin "admin-user=admin" "admin-password=$(password)"
"${H[@]}" upgrade --install kube-prometheus-stack kube-prometheus-stack \
    --repo https://prometheus-community.github.io/helm-charts \
    --version "$KUBE_PROMETHEUS_STACK_VERSION" --namespace monitoring \
    -f "$ROOT/k8s/kube-prometheus-stack-values.yaml" --wait --timeout 15m

# ------------------------------------------------------------------ the app namespace

step "namespace $NAMESPACE: restricted Pod Security Standard, PostgreSQL client, DATABASE_URL Secret"
ensure_namespace "$NAMESPACE"
# cascade.dev/postgres-client: k8s/postgres.yaml's NetworkPolicy admits this namespace's functions
"${K[@]}" label namespace "$NAMESPACE" --overwrite \
    pod-security.kubernetes.io/enforce=restricted \
    pod-security.kubernetes.io/warn=restricted \
    pod-security.kubernetes.io/audit=restricted \
    cascade.dev/postgres-client=true
# sslmode=disable: this PostgreSQL serves no TLS (a dev cluster's, reached only inside it); point
# at a TLS server with sslmode=verify-full&sslrootcert=... instead (docs/kubernetes.md, "Security on a cluster")
ensure_secret "$NAMESPACE" cascade-postgres \
    "DATABASE_URL=postgresql://cascade:$DB_PASSWORD@postgres.postgres.svc.cluster.local:5432/cascade?sslmode=disable"

if [[ "$DEPLOY" == true ]]; then
    RELEASE=cascade
    step "helm upgrade --install $RELEASE (namespace $NAMESPACE)"
    CHART_VALUES=()
    [[ "$BROKER_KIND" == nats ]] && CHART_VALUES=(-f "$ROOT/charts/cascade/ci/nats-values.yaml")
    "${H[@]}" upgrade --install "$RELEASE" "$ROOT/charts/cascade" -n "$NAMESPACE" "${CHART_VALUES[@]}" \
        --wait --timeout 10m
    # helm --wait covers Deployments and Pods, not custom resources: wait on their conditions
    VALUES="$("${H[@]}" get values "$RELEASE" -n "$NAMESPACE" --all -o json)"
    value() { printf '%s' "$VALUES" | python3 -c "import json, sys; v = json.load(sys.stdin)
for key in sys.argv[1].split('.'): v = v[key]
print(str(v).lower() if isinstance(v, bool) else v)" "$1"; }
    BROKER="$(value broker.name)"
    if [[ "$(value kafka.strimzi.enabled)" == true ]]; then
        CLUSTER="$(value kafka.strimzi.clusterName)"
        step "waiting for Kafka $CLUSTER"
        "${K[@]}" -n "$NAMESPACE" wait "kafka/$CLUSTER" --for=condition=Ready --timeout=600s
        if [[ "$(value kafka.strimzi.secure)" == true ]]; then
            "${K[@]}" -n "$NAMESPACE" wait "kafkauser/$BROKER-knative-broker" --for=condition=Ready --timeout=300s
            step "the Kafka broker's login: Secret $BROKER-kafka-auth"
            kafka_auth_secret "$NAMESPACE" "$CLUSTER" "$BROKER-knative-broker" "$BROKER-kafka-auth"
        fi
    fi
    step "waiting for the Broker, the Triggers, the SinkBindings and the Services"
    "${K[@]}" -n "$NAMESPACE" wait "broker/$BROKER" --for=condition=Ready --timeout=600s
    "${K[@]}" -n "$NAMESPACE" wait trigger --all --for=condition=Ready --timeout=600s
    "${K[@]}" -n "$NAMESPACE" wait sinkbinding --all --for=condition=Ready --timeout=300s
    # the SinkBinding rolls out a second revision with K_SINK: wait for it to be the ready one
    "${K[@]}" -n "$NAMESPACE" wait ksvc --all --for=condition=Ready --timeout=600s
    step "helm test $RELEASE"
    "${H[@]}" test "$RELEASE" -n "$NAMESPACE" --logs --timeout 5m
fi

cat <<EOF

==> The cluster is ready (context $CONTEXT). Next:
    make dev                    build the function images and deploy the chart, then redeploy on
                                every change (skaffold dev; needs skaffold)
    (pin the Dockerfile's base image by digest first: docs/kubernetes.md, "Images and dependencies")
    or, without skaffold:
      for f in order inventory payment notification dead-letter; do
        docker build --build-arg FUNCTION=\$f -t cascade-\$f:0.1.0 . && kind load docker-image cascade-\$f:0.1.0 --name $CLUSTER
      done
      k8s/install.sh --deploy --namespace $NAMESPACE --broker $BROKER_KIND   (installs the chart, waits until every
                                custom resource is Ready, then runs helm test)

    Order API   http://order.$NAMESPACE.127.0.0.1.sslip.io/orders
    Jaeger      kubectl -n observability port-forward service/jaeger 16686
    Grafana     kubectl -n monitoring port-forward service/kube-prometheus-stack-grafana 3000:80
                (user admin; password: kubectl -n monitoring get secret grafana-admin -o jsonpath='{.data.admin-password}' | base64 -d)
EOF
