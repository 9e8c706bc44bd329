"""Renders every kustomize overlay under deploy/ (`kubectl kustomize`) and validates each object
against the Kubernetes OpenAPI schemas (PyPI's kubernetes-validate, which carries them; strict:
unknown fields are errors) for the oldest and newest Kubernetes versions we support, then checks
our own deployment rules on every workload: readiness and liveness probes, CPU and memory
requests and limits, a non-root pod, no privilege escalation, a read-only root filesystem, a
PodDisruptionBudget selecting it, and an HPA on the drafter; with --bin, every `--flag` a
container passes to one of our binaries must be a flag that binary has (from its --helpfull).
Negative controls first: a copy of a rendered object with an unknown field, one without probes,
and a made-up flag must fail.

    python deploy/validate.py [--versions 1.29.0,1.37.0] [--bin eagle-drafter=PATH ...]

Exit 0: all valid; 1: errors (each printed); 77: kubectl or kubernetes-validate is missing
(ctest reports the test skipped, with the reason)."""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError as e:
    print(f"skipped: {e.name} is not installed (scripts/test.sh installs kubernetes-validate into "
          ".venv-test)")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
WORKLOADS = ("Deployment", "StatefulSet")


def overlays():
    out = []
    for root, _, files in os.walk(HERE):
        if "kustomization.yaml" in files:
            out.append(root)
    return sorted(out)


def render(overlay):
    r = subprocess.run(["kubectl", "kustomize", overlay], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {r.stderr.strip()}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]


def name(obj):
    return f"{obj['kind']}/{obj['metadata']['name']}"


def schema_errors(obj, versions):
    errors = []
    for v in versions:
        try:
            kubernetes_validate.validate(obj, v, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            errors.append(f"{name(obj)} against {v}: {e.message} (at {path or 'the root'})")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{name(obj)}: no schema for {obj['apiVersion']} {obj['kind']} in {v}")
    return errors


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def rule_errors(objs):
    errors = []
    pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
    hpas = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler"]
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        pod = o["spec"]["template"]
        labels = pod["metadata"].get("labels", {})
        psc = pod["spec"].get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            errors.append(f"{name(o)}: the pod does not set runAsNonRoot")
        for c in pod["spec"]["containers"]:
            where = f"{name(o)} container {c['name']}"
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    errors.append(f"{where}: no {probe}")
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(kind, {}):
                        errors.append(f"{where}: no {r} {kind[:-1]}")
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{where}: allowPrivilegeEscalation is not false")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{where}: the root filesystem is not read-only")
        if not any(selects(p["spec"].get("selector", {}), labels) for p in pdbs):
            errors.append(f"{name(o)}: no PodDisruptionBudget selects its pods")
        if "drafter" in o["metadata"]["name"] and not any(
                h["spec"]["scaleTargetRef"]["name"] == o["metadata"]["name"] for h in hpas):
            errors.append(f"{name(o)}: no HorizontalPodAutoscaler scales it")
    return errors


def binary_flags(path):
    r = subprocess.run([path, "--helpfull"], capture_output=True, text=True)
    return set(re.findall(r"^\s+--([a-z0-9_]+) \(", r.stdout + r.stderr, re.M))


def flag_errors(objs, flags):
    errors = []
    for o in objs:
        if o["kind"] not in WORKLOADS:
            continue
        for c in o["spec"]["template"]["spec"]["containers"]:
            args = c.get("args", [])
            if not args or args[0] not in flags:
                continue
            for a in args[1:]:
                m = re.match(r"--([a-z0-9_]+)", a)
                if m and m.group(1) not in flags[args[0]]:
                    errors.append(f"{name(o)} container {c['name']}: {args[0]} has no flag "
                                  f"--{m.group(1)}")
    return errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", default="1.29.0,1.37.0",
                    help="Kubernetes versions to validate against (comma-separated)")
    ap.add_argument("--bin", action="append", default=[],
                    help="NAME=PATH: check the flags containers pass to this binary")
    args = ap.parse_args()
    versions = args.versions.split(",")
    flags = {}
    for b in args.bin:
        bname, _, path = b.partition("=")
        flags[bname] = binary_flags(path)
        if not flags[bname]:
            print(f"cannot read the flags of {path}")
            sys.exit(1)
    if shutil.which("kubectl") is None:
        print("skipped: kubectl (for `kubectl kustomize`) is not installed")
        sys.exit(77)
    rendered = {o: render(o) for o in overlays()}
    if not rendered:
        print("no overlays found")
        sys.exit(1)

    # Negative controls: the checks must see a typo'd field and a missing probe.
    base = next(o for objs in rendered.values() for o in objs if o["kind"] in WORKLOADS)
    typo = copy.deepcopy(base)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    if not schema_errors(typo, versions[:1]):
        print("FAILED negative control: an unknown container field passed the schema check")
        sys.exit(1)
    noprobe = copy.deepcopy(base)
    del noprobe["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]
    if not rule_errors([noprobe]):
        print("FAILED negative control: a container without a liveness probe passed the rules")
        sys.exit(1)

    if flags:
        bad = copy.deepcopy(base)
        c = bad["spec"]["template"]["spec"]["containers"][0]
        c["args"] = c["args"] + ["--no_such_flag_anywhere=1"]
        if not flag_errors([bad], flags):
            print("FAILED negative control: a made-up flag passed the flag check")
            sys.exit(1)

    errors = []
    for overlay, objs in rendered.items():
        rel = os.path.relpath(overlay, os.path.dirname(HERE))
        before = len(errors)
        for o in objs:
            errors += schema_errors(o, versions)
        errors += rule_errors(objs)
        errors += flag_errors(objs, flags)
        kinds = ", ".join(sorted(name(o) for o in objs))
        status = "ok" if len(errors) == before else f"{len(errors) - before} errors"
        print(f"{rel}: {len(objs)} objects against {', '.join(versions)} (strict), flags of "
              f"{', '.join(sorted(flags)) or 'no binary'}: {status}  [{kinds}]")
    for e in errors:
        print("ERROR", e)
    if errors:
        sys.exit(1)
    print(f"all {len(rendered)} overlays valid")


if __name__ == "__main__":
    main()
