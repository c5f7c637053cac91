#!/usr/bin/env python3
"""Assertions on one `helm template` render of helm/parla (scripts/check-helm.sh runs it).

Prints one `ok - helm: SCENARIO: …` / `not ok - helm: SCENARIO: …` line per assertion; exits 1
if any failed. What kubeconform's schemas cannot say is checked here: the pods run as non-root
with a read-only root filesystem and writable /tmp and data dir, probe /healthz and /readyz,
each Service, Ingress backend, HPA, PDB and ServiceMonitor points at something the render has,
the workloads and their counts are those of the mode, and parla.toml is one Parla accepts.

Usage: check_chart.py --scenario NAME --mode embedded|distributed --render FILE
                      [--existing-secret NAME] [--service-monitor] [--ingress]
                      [--sm-json OUT] [--parla BIN]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11
    tomllib = None

ROLES = ["gateway", "engine", "admin"]
SECRET_ENV = {
    "PARLA__AUTH__JWT_SECRET", "PARLA__CHANNELS__MASTER_KEY", "PARLA__STORE__CQL_PASSWORD",
    "PARLA__CLUSTER__REDIS_URL", "PARLA__MAIL__SMTP_PASSWORD", "PARLA__LLM__API_KEY",
    "PARLA__EMBEDDINGS__API_KEY", "PARLA__VECTORS__QDRANT_API_KEY",
}


class Report:
    def __init__(self, scenario: str) -> None:
        self.scenario = scenario
        self.failed = 0

    def check(self, what: str, ok: bool, detail: str = "") -> bool:
        line = f"helm: {self.scenario}: {what}"
        if ok:
            print(f"ok - {line}")
        else:
            self.failed += 1
            print(f"not ok - {line}" + (f" ({detail})" if detail else ""))
        return ok


def matches(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--mode", required=True, choices=["embedded", "distributed"])
    ap.add_argument("--render", required=True)
    ap.add_argument("--existing-secret", default="")
    ap.add_argument("--service-monitor", action="store_true")
    ap.add_argument("--ingress", action="store_true")
    ap.add_argument("--sm-json", default="")
    ap.add_argument("--parla", default="")
    o = ap.parse_args()
    r = Report(o.scenario)

    with open(o.render) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds: dict[str, list[dict]] = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    named = {(d["kind"], d["metadata"]["name"]): d for d in docs}

    def of(kind: str) -> list[dict]:
        return kinds.get(kind, [])

    workloads = of("Deployment") + of("StatefulSet") + of("Job")
    pods = [(w, w["spec"]["template"]) for w in workloads]
    servers = [(w, t) for w, t in pods if w["kind"] != "Job"]

    # --- the mode's workloads ---
    if o.mode == "embedded":
        sts = of("StatefulSet")
        r.check("one StatefulSet, one replica, no Deployment", len(sts) == 1 and sts[0]["spec"]["replicas"] == 1
                and not of("Deployment"), f"{len(sts)} StatefulSet(s), {len(of('Deployment'))} Deployment(s)")
        claims = sts[0]["spec"].get("volumeClaimTemplates", []) if sts else []
        mounts = {m["name"]: m["mountPath"] for c in (sts[0]["spec"]["template"]["spec"]["containers"] if sts else []) for m in c.get("volumeMounts", [])}
        r.check("the StatefulSet's PVC `data` holds the data dir /var/lib/parla",
                any(c["metadata"]["name"] == "data" for c in claims) and mounts.get("data") == "/var/lib/parla")
        r.check("no HorizontalPodAutoscaler, no PodDisruptionBudget", not of("HorizontalPodAutoscaler") and not of("PodDisruptionBudget"))
    else:
        deps = {d["metadata"]["labels"].get("app.kubernetes.io/component"): d for d in of("Deployment")}
        r.check("three Deployments: gateway, engine, admin; no StatefulSet, no PVC",
                sorted(deps) == sorted(ROLES) and not of("StatefulSet") and not of("PersistentVolumeClaim"), str(sorted(deps)))
        hpas = of("HorizontalPodAutoscaler")
        targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas)
        autoscaled = sorted(d["metadata"]["name"] for d in of("Deployment") if "replicas" not in d["spec"])
        r.check("an HPA (autoscaling/v2) for each autoscaled Deployment, none for the others",
                targets == autoscaled and all(("Deployment", t) in named for t in targets)
                and all(h["apiVersion"] == "autoscaling/v2" for h in hpas), f"HPAs {targets}, autoscaled {autoscaled}")
        r.check("every HPA has minReplicas <= maxReplicas and a metric",
                all(h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"] and h["spec"].get("metrics") for h in hpas))
        r.check("at least one HPA (the distributed default autoscales)", len(hpas) >= 1)
        pdbs = of("PodDisruptionBudget")
        covered = sorted(name for p in pdbs for name, d in ((d["metadata"]["name"], d) for d in of("Deployment"))
                         if matches(p["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"]))
        r.check("a PodDisruptionBudget selecting each Deployment's pods, and only them",
                len(pdbs) == 3 and covered == sorted(d["metadata"]["name"] for d in of("Deployment")), str(covered))
        jobs = of("Job")
        r.check("the migrate Job runs `parla migrate` as a pre-install/pre-upgrade hook",
                len(jobs) == 1 and jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"][0] == "migrate"
                and "pre-install" in jobs[0]["metadata"]["annotations"].get("helm.sh/hook", ""))
        node_ids = [e for _, t in servers for c in t["spec"]["containers"] for e in c.get("env", []) if e["name"] == "PARLA__CLUSTER__NODE_ID"]
        r.check("each node's cluster.node_id is its pod's name",
                len(node_ids) == 3 and all(e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name" for e in node_ids))

    # --- every pod: non-root, read-only root, writable /tmp and data dir, resources, secrets,
    # config; every server pod: its role's flags and probes. One line each, naming the pods
    # that fail it. ---
    def every(what: str, bad: list[str], among: list) -> None:
        r.check(f"{what} ({len(among)} pod templates)", not bad and bool(among), "; ".join(bad))

    secret_names = {s["metadata"]["name"] for s in of("Secret")} | ({o.existing_secret} if o.existing_secret else set())
    bad: dict[str, list[str]] = {k: [] for k in ("root", "ro", "mounts", "resources", "secrets", "config", "serve", "probes")}
    for w, t in pods:
        spec = t["spec"]
        name = f"{w['kind']} {w['metadata']['name']}"
        psc = spec.get("securityContext", {})
        vols = {v["name"]: v for v in spec.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in w["spec"].get("volumeClaimTemplates", [])}
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            if not ((sc.get("runAsNonRoot") or psc.get("runAsNonRoot")) is True and isinstance(uid, int) and uid > 0):
                bad["root"].append(f"{name} (uid {uid})")
            if not (sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
                    and "ALL" in sc.get("capabilities", {}).get("drop", [])):
                bad["ro"].append(name)
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            needed = ["/tmp"] + (["/var/lib/parla"] if w["kind"] != "Job" else [])
            if not all(p in mounts and (mounts[p] in vols or mounts[p] in claims) for p in needed):
                bad["mounts"].append(f"{name} {mounts}")
            res = c.get("resources", {})
            if not ("cpu" in res.get("requests", {}) and "memory" in res.get("requests", {}) and "memory" in res.get("limits", {})):
                bad["resources"].append(name)
            plain = [e["name"] for e in c.get("env", []) if e["name"] in SECRET_ENV and "value" in e]
            refs = [e["valueFrom"]["secretKeyRef"] for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
            dangling = [x["name"] for x in refs if x["name"] not in secret_names and not (x.get("optional") and not of("Secret") and not o.existing_secret)]
            if plain or dangling:
                bad["secrets"].append(f"{name}: plain {plain}, unknown Secrets {sorted(set(dangling))}")
        cm = vols.get("config", {}).get("configMap", {}).get("name")
        if not (cm is not None and ("ConfigMap", cm) in named and "parla.toml" in named[("ConfigMap", cm)]["data"]):
            bad["config"].append(name)
    for w, t in servers:
        name = f"{w['kind']} {w['metadata']['name']}"
        c = t["spec"]["containers"][0]
        role = t["metadata"]["labels"].get("app.kubernetes.io/component")
        args = c.get("args", [])
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        try:
            serve_ok = (args[:1] == ["serve"] and args[args.index("--role") + 1] == role
                        and args[args.index("--listen") + 1] == f"0.0.0.0:{ports.get('http')}"
                        and "--config" in args and args[args.index("--data-dir") + 1] == "/var/lib/parla")
        except (ValueError, IndexError):
            serve_ok = False
        if not serve_ok:
            bad["serve"].append(f"{name}: {args}")
        probes = {k: c.get(k, {}).get("httpGet", {}) for k in ("livenessProbe", "readinessProbe", "startupProbe")}
        if not (probes["livenessProbe"].get("path") == "/healthz" and probes["readinessProbe"].get("path") == "/readyz"
                and probes["startupProbe"].get("path") == "/healthz"
                and [probes[k].get("port") for k in ("livenessProbe", "startupProbe", "readinessProbe")] == ["http", "http", "ops"]):
            bad["probes"].append(f"{name}: {json.dumps(probes)}")
    every("every container runs as non-root (runAsNonRoot, a uid > 0)", bad["root"], pods)
    every("every container: read-only root, no privilege escalation, all capabilities dropped", bad["ro"], pods)
    every("every container has /tmp (and a server its data dir) on a writable volume", bad["mounts"], pods)
    every("every container requests CPU and memory and has a memory limit", bad["resources"], pods)
    every("secrets reach containers only by reference, to a Secret of this render or existingSecret", bad["secrets"], pods)
    every("every pod's config volume is a ConfigMap of this render holding parla.toml", bad["config"], pods)
    every("every server runs `parla serve --role <its component>` on 0.0.0.0:<http port> with --config and --data-dir", bad["serve"], servers)
    every("every server has liveness and startup /healthz on port http, readiness /readyz on port ops", bad["probes"], servers)
    def serves_ops(t):
        c = t["spec"]["containers"][0]
        port = {p["name"]: p["containerPort"] for p in c.get("ports", [])}.get("ops")
        env = {e.get("name"): e.get("value") for e in c.get("env", [])}
        return port is not None and env.get("PARLA__SERVER__OPS_LISTEN") == f"0.0.0.0:{port}"
    no_ops = [f"{w['kind']} {w['metadata']['name']}" for w, t in servers if not serves_ops(t)]
    every("every server serves /readyz and /metrics on its ops port (PARLA__SERVER__OPS_LISTEN)", no_ops, servers)

    # --- Services, Ingress, ServiceMonitor point at what exists ---
    server_labels = [t["metadata"]["labels"] for _, t in servers]
    dangling = [s["metadata"]["name"] for s in of("Service")
                if not any(matches(s["spec"]["selector"], lab) for lab in server_labels)
                or any(p.get("targetPort") not in ("http", "ops", 8080) for p in s["spec"]["ports"])]
    r.check("every Service selects pods of this render on their http (and ops) port", not dangling and bool(of("Service")), str(dangling))
    services = {s["metadata"]["name"]: s for s in of("Service")}
    if o.ingress:
        ing = of("Ingress")
        backends = [p["backend"]["service"] for i in ing for rule in i["spec"]["rules"] for p in rule["http"]["paths"]]
        r.check("the Ingress routes to Services of this render, by port name",
                bool(ing) and all(b["name"] in services and b["port"].get("name") == "http" for b in backends), str(backends))
        if o.mode == "distributed":
            by_path = {p["path"]: p["backend"]["service"]["name"] for i in ing for rule in i["spec"]["rules"] for p in rule["http"]["paths"]}
            r.check("the Ingress sends /api, /console, /v1/agent, /v1/channels to admin and / to gateway",
                    all(by_path.get(p, "").endswith("-admin") for p in ("/api", "/console", "/v1/agent", "/v1/channels"))
                    and by_path.get("/", "").endswith("-gateway"), str(by_path))
    else:
        r.check("no Ingress unless enabled", not of("Ingress"))
    sms = of("ServiceMonitor")
    if o.service_monitor:
        ok = len(sms) == 1
        if ok:
            sel = sms[0]["spec"]["selector"]
            wanted = next((e["values"] for e in sel.get("matchExpressions", []) if e["key"] == "app.kubernetes.io/component"), None)
            scraped = [s for s in of("Service") if matches(sel.get("matchLabels"), s["metadata"]["labels"])
                       and (wanted is None or s["metadata"]["labels"].get("app.kubernetes.io/component") in wanted)]
            ok = bool(scraped) and all(any(p["name"] == e["port"] for p in s["spec"]["ports"]) for s in scraped for e in sms[0]["spec"]["endpoints"])
            ok = ok and all(e.get("path") == "/metrics" and e.get("port") == "ops" for e in sms[0]["spec"]["endpoints"])
        r.check("the ServiceMonitor scrapes /metrics on the ops port of Services of this render", ok)
    else:
        r.check("no ServiceMonitor unless enabled", not sms)
    if o.sm_json:
        with open(o.sm_json, "w") as f:
            json.dump(sms, f)

    # --- the Secret ---
    if o.existing_secret:
        r.check("existingSecret: the chart creates no Secret of its own",
                not [s for s in of("Secret") if "helm.sh/hook" not in s["metadata"].get("annotations", {})])
    elif o.mode == "distributed":
        data = next((s.get("data", {}) for s in of("Secret") if "helm.sh/hook" not in s["metadata"].get("annotations", {})), {})
        r.check("the Secret carries the shared jwt-secret and master-key every node needs",
                "jwt-secret" in data and "master-key" in data)

    # --- parla.toml is one Parla takes ---
    configs = [d for d in of("ConfigMap") if "parla.toml" in d.get("data", {})]
    for cm in configs:
        text = cm["data"]["parla.toml"]
        if tomllib is None:
            print(f"# skip - {o.scenario}: ConfigMap {cm['metadata']['name']}: TOML checks (Python < 3.11 has no tomllib)")
        else:
            try:
                parsed = tomllib.loads(text)
                parsed_ok = True
            except tomllib.TOMLDecodeError as e:
                parsed, parsed_ok = {}, False
                print(f"# {e}")
            r.check(f"ConfigMap {cm['metadata']['name']}: parla.toml is valid TOML", parsed_ok)
            if o.mode == "distributed":
                r.check(f"ConfigMap {cm['metadata']['name']}: CQL store, Kafka bus, Qdrant vectors",
                        parsed.get("store", {}).get("backend") == "cql" and parsed.get("cluster", {}).get("bus") == "kafka"
                        and parsed.get("vectors", {}).get("index") == "qdrant")
            else:
                r.check(f"ConfigMap {cm['metadata']['name']}: embedded store, in-process bus",
                        parsed.get("store", {}).get("backend", "embedded") == "embedded"
                        and parsed.get("cluster", {}).get("bus", "memory") == "memory")
        if o.parla and os.access(o.parla, os.X_OK):
            roles = ROLES if o.mode == "distributed" else ["all"]
            with tempfile.NamedTemporaryFile("w", suffix=".toml") as f:
                f.write(text)
                f.flush()
                errors = []
                for role in roles:
                    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLA__")}
                    env["PARLA__CLUSTER__ROLE"] = role
                    run = subprocess.run([o.parla, "config", "--config", f.name], capture_output=True, text=True, env=env)
                    if run.returncode != 0:
                        errors.append(f"{role}: {run.stderr.strip()[-300:]}")
            r.check(f"ConfigMap {cm['metadata']['name']}: `parla config` accepts parla.toml for role(s) {', '.join(roles)}",
                    not errors, "; ".join(errors))
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
