#!/usr/bin/env python3
"""Checks that everything under deploy/ is valid and agrees with the code it deploys.

Docker is not needed: files are parsed and cross-checked.

* Kubernetes manifests validate against the Kubernetes JSON schemas (kubernetes-validate,
  pinned Kubernetes version); CRDs (KEDA, Prometheus Operator) are checked field by field,
  and names, labels, selectors and ports agree across resources.
* docker-compose.yml references files that exist, sets an image or build on every service,
  publishes sane ports, and builds the worker's REDIS_URL from the password variable.
* Every metric named by the dashboard, the alerts and the autoscalers is in the README's
  metric table (which a Rust test proves equal to what a worker exports).
* deploy/Dockerfile builds the binary with exactly the cargo command CI uses (.ci/run), with
  the `tls` feature (rediss://).
* Every PYTHIA_* / REDIS_URL variable and every --flag given to `pythia` in compose or
  Kubernetes exists in the CLI's arguments (pythia-cli/src) for that subcommand, with a valid value.
* The Redis configs say what they must (and load in a real redis-server when one is installed).

Prints one line per check and a final `N passed, M failed`; exits 1 on any failure.
Needs Python 3.9+, PyYAML and kubernetes-validate.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CLI_RS = ROOT / "pythia-cli" / "src" / "cli.rs"
CLI_SRC = ROOT / "pythia-cli" / "src"


def cli_text() -> str:
    """The CLI's argument definitions: cli.rs (`Cli`, `Command`, the shared flags) and every
    other source file of the binary, where each command's own `…Args` live."""
    rest = sorted(p for p in CLI_SRC.glob("**/*.rs") if p != CLI_RS)
    return "\n".join(p.read_text() for p in [CLI_RS, *rest])
README = ROOT / "README.md"
CI_RUN = ROOT / ".ci" / "run"
COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DASHBOARD = DEPLOY / "grafana" / "pythia.json"

# The Kubernetes version the built-in resources are validated against (kubernetes-validate
# ships schemas for it).
K8S_VERSION = "1.30"
# Seconds terminationGracePeriodSeconds / stop_grace_period must exceed the worker's shutdown
# grace by, for settling and handing back after the grace ends.
GRACE_MARGIN = 5
METRIC_RE = re.compile(r"pythia_[a-z0-9_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")

PASSED = 0
FAILED = 0


class Fail(Exception):
    """A check's problems."""

    def __init__(self, *problems: str):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


def run_check(name: str, fn, *args) -> None:
    """Runs one check and prints one line (plus indented details on failure)."""
    global PASSED, FAILED
    try:
        info = fn(*args)
    except Fail as e:
        FAILED += 1
        print(f"FAIL  {name}")
        for p in e.problems:
            print(f"        - {p}")
        return
    except Exception as e:  # a crash in a check is a failure of that check, not of the run
        FAILED += 1
        print(f"FAIL  {name}: {type(e).__name__}: {e}")
        return
    if info == "skip":
        return
    PASSED += 1
    print(f"ok    {name}" + (f" ({info})" if info else ""))


def skip(name: str, why: str) -> None:
    print(f"skip  {name}: {why}")


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


def expect(problems: list[str]) -> None:
    if problems:
        raise Fail(*problems)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_yaml_docs(path: Path) -> list[dict]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def k8s_files() -> list[Path]:
    """Every Kubernetes manifest: deploy/k8s and the backup CronJob in deploy/backup."""
    return sorted(p for d in (K8S, DEPLOY / "backup") for p in d.rglob("*.yaml") if p.name != "kustomization.yaml")


def k8s_resources() -> list[tuple[Path, dict]]:
    out = []
    for p in k8s_files():
        for d in load_yaml_docs(p):
            out.append((p, d))
    return out


def by_kind(kind: str) -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in k8s_resources() if d.get("kind") == kind]


def one(kind: str) -> dict:
    found = by_kind(kind)
    if len(found) != 1:
        raise Fail(f"expected exactly one {kind} in deploy/k8s, found {len(found)}")
    return found[0][1]


DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60, "h": 3600, "hr": 3600,
    "hrs": 3600, "hour": 3600, "hours": 3600, "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}


def parse_duration(s: str) -> float | None:
    """The CLI's duration syntax (parse_duration in cli.rs): bare seconds, or humantime's
    number-unit sequence (250ms, 30s, 2m, 1h30m, 1d, 500us)."""
    s = str(s).strip()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]+)\s*", s)
    if not parts or "".join(a + b for a, b in parts) != re.sub(r"\s+", "", s):
        return None
    if any(u not in DURATION_UNITS for _, u in parts):
        return None
    return sum(float(n) * DURATION_UNITS[u] for n, u in parts)


def parse_compose_duration(s) -> float | None:
    """Compose durations: 1m30s, 45s, 500ms."""
    if isinstance(s, (int, float)):
        return float(s)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", str(s))
    if not parts or "".join(a + b for a, b in parts) != str(s):
        return None
    unit = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    return sum(float(a) * unit[b] for a, b in parts)


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        k, _, v = line.partition("=")
        out[k.strip()] = v.strip()
    return out


INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose-style ${VAR}, ${VAR:-default}, ${VAR:?error} with the .env.example values."""

    def sub(m: re.Match) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in env and env[name] != "":
            return env[name]
        if op in (":-", "-"):
            return arg
        return ""

    return INTERP.sub(sub, str(value))


# --------------------------------------------------------------------------------------------
# cli.rs
# --------------------------------------------------------------------------------------------


class CliArg:
    def __init__(self, field: str, ty: str, attr: str):
        self.field = field
        self.ty = ty
        self.attr = attr
        m = re.search(r'\blong\s*=\s*"([^"]+)"', attr)
        if m:
            self.long = m.group(1)
        elif re.search(r"\blong\b", attr):
            self.long = field.replace("_", "-")
        else:
            self.long = None
        m = re.search(r'\benv\s*=\s*"([^"]+)"', attr)
        self.env = m.group(1) if m else None
        m = re.search(r'\bconflicts_with\s*=\s*"([^"]+)"', attr)
        self.conflicts_with = m.group(1) if m else None
        self.global_ = bool(re.search(r"\bglobal\s*=\s*true", attr))
        self.value_enum = bool(re.search(r"\bvalue_enum\b", attr))
        m = re.search(r"\bvalue_parser\s*=\s*([A-Za-z_:]+)", attr)
        self.value_parser = m.group(1) if m else None

    @property
    def inner_type(self) -> str:
        m = re.fullmatch(r"(?:Option|Vec)<(.+)>", self.ty)
        return m.group(1) if m else self.ty

    @property
    def is_flag(self) -> bool:
        return self.ty == "bool"

    def check_value(self, value: str, enums: dict[str, list[str]]) -> str | None:
        """None if `value` is acceptable, else why not."""
        t = self.inner_type
        if self.value_enum and t in enums:
            if value not in enums[t]:
                return f"{value!r} is not one of {', '.join(enums[t])}"
            return None
        if self.value_parser == "parse_duration":
            return None if parse_duration(value) is not None else f"{value!r} is not a duration (250ms, 30s, 2m)"
        if self.value_parser == "parse_metrics_addr":
            if value.strip() in ("off", "none", "false", ""):
                return None
            return None if re.fullmatch(r"(\[[0-9a-fA-F:]+\]|[0-9.]+):\d{1,5}", value) else f"{value!r} is not HOST:PORT or off"
        if t in ("u16", "u32", "u64", "usize"):
            return None if re.fullmatch(r"\d+", value) else f"{value!r} is not an unsigned integer"
        if t in ("f32", "f64"):
            return None if re.fullmatch(r"\d+(\.\d+)?", value) else f"{value!r} is not a number"
        if t == "bool":
            return None if value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off") else f"{value!r} is not a boolean"
        return None


class Cli:
    """What pythia-cli/src/cli.rs declares: subcommands, their args, value enums."""

    def __init__(self, text: str):
        self.structs: dict[str, list[CliArg]] = {}
        self.flatten: dict[str, list[str]] = {}
        self.enums: dict[str, list[str]] = {}
        self.subcommands: dict[str, str] = {}
        for m in re.finditer(r"^pub\(crate\) struct (\w+) \{\n(.*?)^\}", text, re.S | re.M):
            self._struct(m.group(1), m.group(2))
        for m in re.finditer(r"^pub\(crate\) enum (\w+) \{\n(.*?)^\}", text, re.S | re.M):
            name, body = m.group(1), m.group(2)
            # `#[value(name = "x")]` / `#[command(name = "x")]` rename a variant.
            # A variant's arguments may be boxed: `Run(Box<RunArgs>)`.
            variants = re.findall(r'(?:#\[(?:value|command)\(name = "([^"]+)"\)\]\s*)?^    (\w+)(?:\((?:Box<)?(?:[\w:]+::)?(\w+)>?\))?,', body, re.M)
            if name == "Command":
                for renamed, v, args in variants:
                    self.subcommands[renamed or kebab(v)] = args
            else:
                self.enums[name] = [renamed or kebab(v) for renamed, v, _ in variants]

    def _struct(self, name: str, body: str) -> None:
        args, flat, attr = [], [], []
        pending_attr = ""
        for line in body.splitlines():
            s = line.strip()
            if s.startswith("#[arg(") or (pending_attr and not s.startswith("pub")):
                pending_attr += " " + s
                continue
            if s.startswith("#[command(flatten)]"):
                attr.append("flatten")
                continue
            m = re.match(r"pub\(crate\) (\w+): (.+),$", s)
            if m:
                field, ty = m.group(1), m.group(2)
                if "flatten" in attr:
                    flat.append(ty)
                elif pending_attr:
                    args.append(CliArg(field, ty, pending_attr))
                pending_attr, attr = "", []
        self.structs[name] = args
        self.flatten[name] = flat

    def args_of(self, subcommand: str) -> list[CliArg]:
        """Every option `pythia <subcommand>` takes, including flattened and global ones."""
        if subcommand not in self.subcommands:
            raise Fail(f"`pythia {subcommand}` is not a subcommand ({', '.join(self.subcommands)})")
        out = [a for a in self.structs.get("Cli", []) if a.global_]
        todo = [self.subcommands[subcommand]]
        while todo:
            s = todo.pop()
            out += self.structs.get(s, [])
            todo += self.flatten.get(s, [])
        return out


def kebab(ident: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "-", ident).lower()


_CLI: Cli | None = None


def cli() -> Cli:
    global _CLI
    if _CLI is None:
        _CLI = Cli(cli_text())
        if "run" not in _CLI.subcommands or not _CLI.args_of("run"):
            raise Fail(f"could not read the `run` options from {rel(CLI_SRC)}")
    return _CLI


def library_env_vars() -> set[str]:
    """Environment variables read by the libraries outside cli.rs (e.g. POD_NAME for the
    consumer name): string literals in non-test source files that call std::env::var."""
    out = set()
    for src in ROOT.glob("*/src/**/*.rs"):
        text = src.read_text()
        # The CLI's own variables are clap `env = "…"` attributes, checked per subcommand.
        if "env::var" not in text or src.is_relative_to(ROOT / "pythia-cli"):
            continue
        out |= set(re.findall(r'"([A-Z][A-Z0-9_]{2,})"', text))
    return out


def check_invocation(where: str, argv: list[str], env: dict[str, str]) -> list[str]:
    """Problems with running `pythia <argv>` with `env`: unknown subcommand, unknown --flag,
    bad values, unknown PYTHIA_* variables, conflicting options."""
    c = cli()
    problems = []
    if not argv:
        return [f"{where}: no subcommand"]
    sub = argv[0]
    try:
        args = c.args_of(sub)
    except Fail as e:
        return [f"{where}: {p}" for p in e.problems]
    by_long = {a.long: a for a in args if a.long}
    by_env = {a.env: a for a in args if a.env}
    lib_env = library_env_vars()
    given: set[str] = set()
    i = 1
    while i < len(argv):
        tok = argv[i]
        if tok.startswith("--"):
            name, eq, value = tok[2:].partition("=")
            a = by_long.get(name)
            if a is None:
                problems.append(f"{where}: `pythia {sub}` has no option --{name} (pythia-cli/src)")
                i += 1
                continue
            given.add(a.field)
            if a.is_flag:
                i += 1
                continue
            if not eq:
                if i + 1 >= len(argv):
                    problems.append(f"{where}: --{name} needs a value")
                    break
                value = argv[i + 1]
                i += 1
            why = a.check_value(value, c.enums)
            if why:
                problems.append(f"{where}: --{name}: {why}")
        elif tok.startswith("-") and tok != "-":
            problems.append(f"{where}: short option {tok}: use the long form, which this check can verify")
        i += 1
    for k, v in env.items():
        if k in by_env:
            a = by_env[k]
            given.add(a.field)
            if v is not None:
                why = a.check_value(str(v), c.enums)
                if why:
                    problems.append(f"{where}: {k}: {why}")
        elif k.startswith("PYTHIA_") or k == "REDIS_URL":
            if k in lib_env:
                continue
            other = sorted(s for s in c.subcommands if k in {a.env for a in c.args_of(s)})
            hint = f" (it belongs to `pythia {', '.join(other)}`)" if other else ""
            problems.append(f"{where}: `pythia {sub}` reads no variable {k}{hint}: it would silently do nothing")
        elif k not in lib_env:
            problems.append(f"{where}: {k} is read neither by the CLI nor by the libraries")
    for a in args:
        if a.conflicts_with and a.field in given and a.conflicts_with in given:
            problems.append(f"{where}: --{a.long} conflicts with --{a.conflicts_with.replace('_', '-')}, both are set")
    return problems


def effective(subcommand: str, long: str, argv: list[str], env: dict[str, str]) -> str | None:
    """The value `pythia <subcommand>` uses for --<long>: the flag, else its variable, else the
    default declared in the CLI's arguments."""
    a = next((a for a in cli().args_of(subcommand) if a.long == long), None)
    if a is None:
        raise Fail(f"`pythia {subcommand}` has no option --{long}")
    for i, tok in enumerate(argv):
        if tok == f"--{long}" and i + 1 < len(argv):
            return argv[i + 1]
        if tok.startswith(f"--{long}="):
            return tok.partition("=")[2]
    if a.env and env.get(a.env) is not None:
        return str(env[a.env])
    m = re.search(r'default_value\s*=\s*"([^"]*)"', a.attr) or re.search(r"default_value_t\s*=\s*(?:\w+::)?(\w+)", a.attr)
    if not m:
        return None
    v = m.group(1)
    return kebab(v) if v[:1].isupper() else v


def shutdown_grace(argv: list[str], env: dict[str, str]) -> float:
    """The worker's --shutdown-grace in seconds (flag, then env, then the CLI default)."""
    for i, tok in enumerate(argv):
        if tok.startswith("--shutdown-grace"):
            v = tok.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
            return parse_duration(v) or 0
    if "PYTHIA_SHUTDOWN_GRACE" in env:
        return parse_duration(env["PYTHIA_SHUTDOWN_GRACE"]) or 0
    m = re.search(r'env = "PYTHIA_SHUTDOWN_GRACE", default_value = "([^"]+)"', cli_text())
    return parse_duration(m.group(1)) if m else 30


def metrics_port(argv: list[str], env: dict[str, str]) -> int | None:
    for i, tok in enumerate(argv):
        if tok.startswith("--metrics-addr"):
            v = tok.partition("=")[2] or (argv[i + 1] if i + 1 < len(argv) else "")
            break
    else:
        v = env.get("PYTHIA_METRICS_ADDR")
        if v is None:
            m = re.search(r'env = "PYTHIA_METRICS_ADDR", default_value = "([^"]+)"', cli_text())
            v = m.group(1) if m else "0.0.0.0:9090"
    m = re.search(r":(\d+)$", str(v))
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------------------------
# 1. Kubernetes
# --------------------------------------------------------------------------------------------

CRD_KINDS = {
    ("keda.sh/v1alpha1", "ScaledObject"),
    ("keda.sh/v1alpha1", "TriggerAuthentication"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def check_k8s_parse() -> str:
    problems, n = [], 0
    if not K8S.is_dir():
        raise Fail("deploy/k8s is missing")
    for p in k8s_files():
        try:
            docs = load_yaml_docs(p)
        except yaml.YAMLError as e:
            problems.append(f"{rel(p)}: {e}")
            continue
        if not docs:
            problems.append(f"{rel(p)}: no document")
        for d in docs:
            n += 1
            for f in ("apiVersion", "kind"):
                if not isinstance(d.get(f), str):
                    problems.append(f"{rel(p)}: a document without {f}")
            if not (d.get("metadata") or {}).get("name"):
                problems.append(f"{rel(p)}: {d.get('kind')} without metadata.name")
    expect(problems)
    return f"{n} resources in {len(k8s_files())} files"


def check_k8s_schema(path: Path, doc: dict) -> str:
    import kubernetes_validate
    from kubernetes_validate.utils import all_versions

    if not any(v == K8S_VERSION or v.startswith(K8S_VERSION + ".") for v in all_versions()):
        raise Fail(f"kubernetes-validate {kubernetes_validate.__version__} ships no schemas for Kubernetes {K8S_VERSION}")
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        path_s = ".".join(str(x) for x in e.path)
        raise Fail(f"{path_s}: {e.message}")
    except kubernetes_validate.SchemaNotFoundError as e:
        raise Fail(e.message)
    return f"strict, Kubernetes {K8S_VERSION}"


def pod_labels(dep: dict) -> dict:
    return dep["spec"]["template"]["metadata"].get("labels", {})


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def worker_container(dep: dict) -> dict:
    cs = dep["spec"]["template"]["spec"]["containers"]
    if len(cs) != 1:
        raise Fail(f"expected one container in the Deployment, found {len(cs)}")
    return cs[0]


def configmap_env() -> dict[str, str]:
    return {k: str(v) for k, v in (one("ConfigMap").get("data") or {}).items()}


def check_k8s_deployment() -> str:
    dep = one("Deployment")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    c = worker_container(dep)
    problems = []
    if not selects(spec["selector"].get("matchLabels", {}), pod_labels(dep)):
        problems.append("spec.selector.matchLabels does not match the pod template's labels")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    cm = configmap_env()
    port = metrics_port(c.get("args", []), cm)
    if ports.get("metrics") != port:
        problems.append(f"container port `metrics` is {ports.get('metrics')}, the worker serves on {port} (PYTHIA_METRICS_ADDR)")
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        h = (c.get(probe) or {}).get("httpGet")
        if not h:
            problems.append(f"{probe} is not an httpGet probe")
            continue
        if h.get("path") != path:
            problems.append(f"{probe} path is {h.get('path')}, expected {path}")
        pp = h.get("port")
        if (ports.get(pp) if isinstance(pp, str) else pp) != port:
            problems.append(f"{probe} port {pp} is not the metrics port {port}")
    grace = shutdown_grace(c.get("args", []), cm)
    tgps = pod.get("terminationGracePeriodSeconds", 30)
    if tgps < grace + GRACE_MARGIN:
        problems.append(f"terminationGracePeriodSeconds {tgps} must exceed the worker's shutdown grace {grace:g}s by {GRACE_MARGIN}s")
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in res.get(kind, {}):
                problems.append(f"resources.{kind}.{r} is not set")
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        problems.append("runAsNonRoot is not set")
    if (psc.get("runAsUser", csc.get("runAsUser", 1)) or 0) == 0:
        problems.append("runs as root (runAsUser 0)")
    if not csc.get("readOnlyRootFilesystem"):
        problems.append("readOnlyRootFilesystem is not true")
    if csc.get("allowPrivilegeEscalation", True):
        problems.append("allowPrivilegeEscalation is not false")
    if "ALL" not in (csc.get("capabilities") or {}).get("drop", []):
        problems.append("capabilities are not dropped (drop: [ALL])")
    env = {e["name"]: e for e in c.get("env", [])}
    pn = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if pn != "metadata.name":
        problems.append("POD_NAME is not set from the downward API (fieldRef metadata.name)")
    ref = env.get("REDIS_URL", {}).get("valueFrom", {}).get("secretKeyRef")
    if not ref:
        problems.append("REDIS_URL does not come from a Secret (secretKeyRef)")
    elif not secret_has(ref["name"], ref["key"]):
        problems.append(f"REDIS_URL refers to Secret {ref['name']} key {ref['key']}, not in secret.example.yaml")
    if "value" in env.get("REDIS_URL", {}):
        problems.append("REDIS_URL is a literal value: a password in a manifest")
    cms = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
    if one("ConfigMap")["metadata"]["name"] not in cms:
        problems.append("the container does not load the ConfigMap with envFrom")
    expect(problems)
    return f"grace {tgps}s > shutdown {grace:g}s, metrics port {port}, non-root, read-only root"


def secret_has(name: str, key: str) -> bool:
    for _, d in by_kind("Secret"):
        if d["metadata"]["name"] == name:
            return key in (d.get("stringData") or {}) or key in (d.get("data") or {})
    return False


def check_k8s_secret_example() -> str:
    secrets_ = by_kind("Secret")
    problems = []
    if {p.name for p, _ in secrets_} != {"secret.example.yaml"}:
        problems.append(f"Secrets must only be in secret.example.yaml, found in {[rel(p) for p, _ in secrets_]}")
    for p, d in secrets_:
        for k, v in (d.get("stringData") or {}).items():
            if k.endswith(("password", "url")) and "CHANGE_ME" not in str(v):
                problems.append(f"{rel(p)}: {k} does not hold the CHANGE_ME placeholder: is it a real secret?")
        if d.get("data"):
            problems.append(f"{rel(p)}: use stringData with placeholders, not base64 data")
    expect(problems)
    return "placeholders only"


def check_k8s_service_pdb() -> str:
    dep = one("Deployment")
    labels = pod_labels(dep)
    c = worker_container(dep)
    cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    problems = []
    svc = one("Service")
    if not selects(svc["spec"].get("selector", {}), labels):
        problems.append("the Service's selector does not match the worker pods")
    for p in svc["spec"]["ports"]:
        tp = p.get("targetPort", p["port"])
        if (tp not in cports) if isinstance(tp, str) else (tp not in cports.values()):
            problems.append(f"Service port {p.get('name')} targets {tp}, not a container port")
    pdb = one("PodDisruptionBudget")
    if not selects(pdb["spec"]["selector"].get("matchLabels", {}), labels):
        problems.append("the PodDisruptionBudget's selector does not match the worker pods")
    if "maxUnavailable" not in pdb["spec"] and "minAvailable" not in pdb["spec"]:
        problems.append("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
    expect(problems)
    return "selectors match the pods, ports match the container"


def check_k8s_servicemonitor() -> str:
    sm = one("ServiceMonitor")
    svc = one("Service")
    problems = []
    if sm.get("apiVersion") != "monitoring.coreos.com/v1":
        problems.append(f"apiVersion {sm.get('apiVersion')}")
    sel = (sm.get("spec", {}).get("selector") or {}).get("matchLabels", {})
    if not selects(sel, svc["metadata"].get("labels", {})):
        problems.append("spec.selector.matchLabels does not match the Service's labels")
    eps = sm.get("spec", {}).get("endpoints") or []
    if not eps:
        problems.append("no endpoints")
    names = {p.get("name") for p in svc["spec"]["ports"]}
    for ep in eps:
        if ep.get("port") not in names:
            problems.append(f"endpoint port {ep.get('port')!r} is not a named port of the Service")
        if ep.get("path", "/metrics") != "/metrics":
            problems.append(f"endpoint path {ep.get('path')}")
    expect(problems)
    return f"scrapes Service {svc['metadata']['name']} port {eps[0].get('port')}"


def check_k8s_prometheusrule() -> str:
    pr = one("PrometheusRule")
    svc = one("Service")["metadata"]["name"]
    dep = one("Deployment")["metadata"]["name"]
    problems, alerts = [], []
    groups = (pr.get("spec") or {}).get("groups") or []
    if not groups:
        problems.append("no rule groups")
    for g in groups:
        if not g.get("name"):
            problems.append("a group without a name")
        for r in g.get("rules") or []:
            name = r.get("alert") or r.get("record")
            if not name or not isinstance(r.get("expr"), str):
                problems.append(f"rule {name!r}: needs alert (or record) and expr")
                continue
            alerts.append(name)
            expr = r["expr"]
            if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}") or expr.count("[") != expr.count("]"):
                problems.append(f"{name}: unbalanced brackets in expr")
            for job in re.findall(r'job="([^"]+)"', expr):
                if job != svc:
                    problems.append(f"{name}: job={job!r}, but the ServiceMonitor's job label is the Service name {svc!r}")
            for d in re.findall(r'deployment="([^"]+)"', expr):
                if d != dep:
                    problems.append(f"{name}: deployment={d!r}, but the Deployment is {dep!r}")
            if "for" in r and parse_compose_duration(r["for"]) is None:
                problems.append(f"{name}: bad `for` {r['for']!r}")
            if r.get("alert") and "severity" not in (r.get("labels") or {}):
                problems.append(f"{name}: no severity label")
    if len(set(alerts)) != len(alerts):
        problems.append("duplicate alert names")
    expect(problems)
    return f"{len(alerts)} alerts"


def check_k8s_autoscalers() -> str:
    dep = one("Deployment")["metadata"]["name"]
    queue = configmap_env().get("PYTHIA_QUEUE")
    auths = {d["metadata"]["name"]: d for _, d in by_kind("TriggerAuthentication")}
    problems, seen = [], []
    for p, so in by_kind("ScaledObject"):
        where = rel(p)
        if so.get("apiVersion") != "keda.sh/v1alpha1":
            problems.append(f"{where}: apiVersion {so.get('apiVersion')}")
        spec = so.get("spec") or {}
        tgt = spec.get("scaleTargetRef") or {}
        if tgt.get("name") != dep or tgt.get("kind", "Deployment") != "Deployment":
            problems.append(f"{where}: scaleTargetRef {tgt} is not Deployment {dep}")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        if lo < 1:
            problems.append(f"{where}: minReplicaCount {lo}: scheduled retries and dead consumers need a running worker")
        if hi < lo:
            problems.append(f"{where}: maxReplicaCount < minReplicaCount")
        triggers = spec.get("triggers") or []
        if not triggers:
            problems.append(f"{where}: no triggers")
        for t in triggers:
            md = t.get("metadata") or {}
            for k, v in md.items():
                if not isinstance(v, str):
                    problems.append(f"{where}: trigger metadata {k} must be a string (KEDA reads strings)")
            if t.get("type") == "redis":
                seen.append("redis")
                for k in ("listName", "listLength"):
                    if k not in md:
                        problems.append(f"{where}: redis trigger without {k}")
                if md.get("listName") != queue:
                    problems.append(f"{where}: listName {md.get('listName')!r} is not the ConfigMap's PYTHIA_QUEUE {queue!r}")
            elif t.get("type") == "redis-streams":
                seen.append("redis-streams")
                for k in ("stream", "consumerGroup", "lagCount", "activationLagCount"):
                    if k not in md:
                        problems.append(f"{where}: redis-streams trigger without {k}")
                if md.get("stream") != queue:
                    problems.append(f"{where}: stream {md.get('stream')!r} is not the ConfigMap's PYTHIA_QUEUE {queue!r}")
                group = effective("run", "group", [], configmap_env())
                if md.get("consumerGroup") != group:
                    problems.append(f"{where}: consumerGroup {md.get('consumerGroup')!r} is not the workers' group {group!r} (PYTHIA_GROUP)")
            else:
                problems.append(f"{where}: unexpected trigger type {t.get('type')!r}")
            if not any(k in md for k in ("address", "addressFromEnv", "host")):
                ref = (t.get("authenticationRef") or {}).get("name")
                if ref not in auths:
                    problems.append(f"{where}: no address and no TriggerAuthentication named {ref!r}")
    for name, ta in auths.items():
        for ref in (ta.get("spec") or {}).get("secretTargetRef") or []:
            if not secret_has(ref.get("name"), ref.get("key")):
                problems.append(f"TriggerAuthentication {name}: Secret {ref.get('name')} key {ref.get('key')} is not in secret.example.yaml")
        params = {r.get("parameter") for r in (ta.get("spec") or {}).get("secretTargetRef") or []}
        if not {"address", "password"} <= params:
            problems.append(f"TriggerAuthentication {name}: needs the parameters address and password")
    for want in ("redis", "redis-streams"):
        if want not in seen:
            problems.append(f"no KEDA ScaledObject with a {want} trigger")
    hpas = by_kind("HorizontalPodAutoscaler")
    if not hpas:
        problems.append("no HorizontalPodAutoscaler alternative")
    for p, h in hpas:
        spec = h["spec"]
        if spec["scaleTargetRef"].get("name") != dep:
            problems.append(f"{rel(p)}: scaleTargetRef is not Deployment {dep}")
        if spec.get("minReplicas", 1) < 1:
            problems.append(f"{rel(p)}: minReplicas < 1")
        ext = [m["external"] for m in spec.get("metrics", []) if m.get("type") == "External"]
        if not ext:
            problems.append(f"{rel(p)}: no External metric")
        for e in ext:
            sel = (e["metric"].get("selector") or {}).get("matchLabels", {})
            if sel.get("queue") != queue:
                problems.append(f"{rel(p)}: metric selector queue={sel.get('queue')!r}, ConfigMap PYTHIA_QUEUE is {queue!r}")
    expect(problems)
    return f"KEDA {', '.join(seen)} and an HPA on Deployment {dep}, queue {queue}"


def check_k8s_kustomization() -> str:
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    problems = []
    if k.get("kind") != "Kustomization":
        problems.append("kind is not Kustomization")
    listed = k.get("resources") or []
    for r in listed:
        if not (K8S / r).is_file():
            problems.append(f"resource {r} does not exist")
    names = {Path(r).name for r in listed}
    if "secret.example.yaml" in names:
        problems.append("secret.example.yaml must not be applied")
    for core in ("Deployment", "ConfigMap", "Service", "PodDisruptionBudget"):
        if not any(d.get("kind") == core for r in listed if (K8S / r).is_file() for d in load_yaml_docs(K8S / r)):
            problems.append(f"no {core} among the resources")
    scalers = [r for r in listed if (K8S / r).is_file()
               and any(d.get("kind") in ("ScaledObject", "HorizontalPodAutoscaler") for d in load_yaml_docs(K8S / r))]
    if len(scalers) > 1:
        problems.append(f"more than one autoscaler listed ({scalers}): they would fight over the replica count")
    expect(problems)
    return f"{len(listed)} core resources"


def check_k8s_cli() -> str:
    dep = one("Deployment")
    c = worker_container(dep)
    if c.get("command"):
        raise Fail("the container overrides the image's ENTRYPOINT (pythia); pass the subcommand in args")
    env = dict(configmap_env())
    for e in c.get("env", []):
        env[e["name"]] = e.get("value")
    problems = check_invocation("deployment.yaml", list(c.get("args", [])), env)
    expect(problems)
    return f"`pythia {' '.join(c.get('args', []))}` with {len(env)} variables"


# --------------------------------------------------------------------------------------------
# 2. docker compose
# --------------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def service_argv(svc: dict, env: dict[str, str]) -> list[str]:
    cmd = svc.get("command") or []
    if isinstance(cmd, str):
        cmd = shlex.split(cmd)
    return [interpolate(str(x), env) for x in cmd]


def service_env(svc: dict, env: dict[str, str]) -> dict[str, str]:
    e = svc.get("environment") or {}
    if isinstance(e, list):
        e = dict(x.split("=", 1) if "=" in x else (x, None) for x in e)
    return {k: (interpolate(str(v), env) if v is not None else None) for k, v in e.items()}


def pythia_services(c: dict) -> dict[str, dict]:
    """Services running the pythia image (built from deploy/Dockerfile)."""
    out = {}
    for name, s in c["services"].items():
        b = s.get("build")
        if isinstance(b, dict) and b.get("dockerfile") == "deploy/Dockerfile":
            out[name] = s
    return out


def check_compose_files() -> str:
    c = compose()
    problems = []
    services = c.get("services") or {}
    if not services:
        raise Fail("no services")
    volumes = set((c.get("volumes") or {}).keys())
    for name, s in services.items():
        if not s.get("image") and not s.get("build"):
            problems.append(f"{name}: neither image nor build")
        b = s.get("build")
        if b:
            ctx = DEPLOY / (b if isinstance(b, str) else b.get("context", "."))
            if not ctx.is_dir():
                problems.append(f"{name}: build context {ctx} does not exist")
            elif isinstance(b, dict) and not (ctx / b.get("dockerfile", "Dockerfile")).is_file():
                problems.append(f"{name}: Dockerfile {b.get('dockerfile')} not found in the context")
        for v in s.get("volumes") or []:
            src = v.split(":")[0] if isinstance(v, str) else v.get("source")
            if src.startswith((".", "/")):
                if not (DEPLOY / src).exists():
                    problems.append(f"{name}: mounted {src} does not exist")
            elif src not in volumes:
                problems.append(f"{name}: named volume {src} is not declared under volumes:")
        dep = s.get("depends_on") or []
        for d in dep if isinstance(dep, list) else dep.keys():
            if d not in services:
                problems.append(f"{name}: depends_on unknown service {d}")
    expect(problems)
    return f"{len(services)} services, every referenced file exists"


def check_compose_ports() -> str:
    c = compose()
    problems, host_ports = [], {}
    for name, s in c["services"].items():
        for p in s.get("ports") or []:
            m = re.fullmatch(r"(?:(\d+\.\d+\.\d+\.\d+):)?(?:(\d+):)?(\d+)(?:/(tcp|udp))?", str(p))
            if not m:
                problems.append(f"{name}: cannot parse port {p!r}")
                continue
            ip, host, cont = m.group(1), m.group(2), m.group(3)
            for n in (host, cont):
                if n and not 1 <= int(n) <= 65535:
                    problems.append(f"{name}: port {n} out of range")
            if host is None:
                problems.append(f"{name}: {p!r} publishes a random host port")
            elif host in host_ports:
                problems.append(f"{name}: host port {host} already used by {host_ports[host]}")
            else:
                host_ports[host] = name
            if ip != "127.0.0.1":
                problems.append(f"{name}: {p!r} is published on every interface; bind it to 127.0.0.1")
        if name.startswith("redis") and s.get("ports"):
            problems.append(f"{name}: Redis must not be published outside the compose network")
    expect(problems)
    return f"host ports {', '.join(sorted(host_ports))} on 127.0.0.1 only"


def check_compose_redis() -> str:
    c = compose()
    env = env_example()
    problems = []
    services = c["services"]
    queue = services.get("redis-queue")
    if not queue:
        raise Fail("no redis-queue service")
    raw_cmd = [str(x) for x in queue.get("command") or []]
    if not any("queue.conf" in x for x in raw_cmd):
        problems.append("redis-queue does not start with queue.conf")
    if not any(str(v).startswith("./redis/queue.conf:") for v in queue.get("volumes") or []):
        problems.append("redis-queue does not mount ./redis/queue.conf")
    if "--requirepass" not in raw_cmd or not re.match(r"\$\{REDIS_QUEUE_PASSWORD[:?}]", raw_cmd[raw_cmd.index("--requirepass") + 1]):
        problems.append("redis-queue: --requirepass is not ${REDIS_QUEUE_PASSWORD}")
    cache = services.get("redis-cache")
    if cache:
        cmd = [str(x) for x in cache.get("command") or []]
        if "--requirepass" not in cmd or not re.match(r"\$\{REDIS_CACHE_PASSWORD[:?}]", cmd[cmd.index("--requirepass") + 1]):
            problems.append("redis-cache: --requirepass is not ${REDIS_CACHE_PASSWORD}: the cache must not share the queue's password")
        if "QUEUE" in json.dumps(cache):
            problems.append("redis-cache mentions the queue's password variable")
    for name, s in pythia_services(c).items():
        url = str((s.get("environment") or {}).get("REDIS_URL", ""))
        m = re.fullmatch(r"redis://:\$\{REDIS_QUEUE_PASSWORD[^}]*\}@([\w-]+):(\d+)(/\d+)?", url)
        if not m:
            problems.append(f"{name}: REDIS_URL {url!r} is not redis://:${{REDIS_QUEUE_PASSWORD}}@<service>:<port>")
            continue
        if m.group(1) != "redis-queue" or m.group(2) != "6379":
            problems.append(f"{name}: REDIS_URL points at {m.group(1)}:{m.group(2)}, not the queue Redis redis-queue:6379")
        if not any(d == "redis-queue" for d in (s.get("depends_on") or {})):
            problems.append(f"{name}: does not depend on redis-queue")
    backup = services.get("redis-backup")
    if not backup:
        problems.append("no redis-backup service: the queue Redis is never backed up")
    else:
        benv = backup.get("environment") or {}
        if not re.match(r"\$\{REDIS_QUEUE_PASSWORD[:?}]", str(benv.get("REDISCLI_AUTH", ""))):
            problems.append("redis-backup: REDISCLI_AUTH is not ${REDIS_QUEUE_PASSWORD}")
        if benv.get("REDIS_ADDRESS") != "redis-queue:6379":
            problems.append("redis-backup: REDIS_ADDRESS is not redis-queue:6379")
        if not any(str(v).startswith("./backup/redis-backup.sh:") for v in backup.get("volumes") or []):
            problems.append("redis-backup does not mount ./backup/redis-backup.sh")
    queue_pw, cache_pw = (interpolate(f"${{{v}}}", env) for v in ("REDIS_QUEUE_PASSWORD", "REDIS_CACHE_PASSWORD"))
    if not queue_pw or not cache_pw:
        problems.append(".env.example gives REDIS_QUEUE_PASSWORD or REDIS_CACHE_PASSWORD no value")
    elif queue_pw == cache_pw:
        problems.append(".env.example gives the queue and the cache Redis the same password")
    expect(problems)
    return "queue.conf mounted, queue password in redis-server, every REDIS_URL and the backup; the cache's its own"


def check_compose_env_documented() -> str:
    used = set(m.group(1) for m in INTERP.finditer(COMPOSE.read_text()))
    documented = set(env_example())
    missing = sorted(used - documented)
    if missing:
        raise Fail(f"used in docker-compose.yml but not documented in .env.example: {', '.join(missing)}")
    extra = sorted(documented - used)
    if extra:
        raise Fail(f"documented in .env.example but used nowhere in docker-compose.yml: {', '.join(extra)}")
    return f"{len(used)} variables"


def check_compose_cli() -> str:
    c = compose()
    env = env_example()
    problems, seen = [], []
    for name, s in pythia_services(c).items():
        argv = service_argv(s, env)
        problems += check_invocation(f"compose {name}", argv, service_env(s, env))
        seen.append(f"{name}: pythia {argv[0] if argv else '?'}")
    subs = {x.split("pythia ")[1] for x in seen}
    if not {"run", "produce"} <= subs:
        problems.append(f"expected a worker (pythia run) and a producer (pythia produce), found {seen}")
    if not problems:
        # The producer must feed what the worker reads.
        feeds = {}
        for name, s in pythia_services(c).items():
            argv, senv = service_argv(s, env), service_env(s, env)
            feeds[name] = tuple(effective(argv[0], o, argv, senv) for o in ("broker", "queue"))
        if len(set(feeds.values())) != 1:
            problems.append(f"the services disagree on (broker, queue): {feeds}")
    expect(problems)
    return "; ".join(seen)


def check_compose_worker() -> str:
    c = compose()
    env = env_example()
    problems = []
    workers = {n: s for n, s in pythia_services(c).items() if service_argv(s, env)[:1] == ["run"]}
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = []
    for sc in prom.get("scrape_configs") or []:
        for dns in sc.get("dns_sd_configs") or []:
            targets += [(n, dns.get("port")) for n in dns.get("names") or []]
        for st in sc.get("static_configs") or []:
            for t in st.get("targets") or []:
                h, _, pt = t.partition(":")
                targets.append((h, int(pt) if pt else None))
    for name, s in workers.items():
        argv, senv = service_argv(s, env), service_env(s, env)
        grace = shutdown_grace(argv, senv)
        stop = parse_compose_duration(s.get("stop_grace_period", "10s"))
        if stop is None or stop < grace + GRACE_MARGIN:
            problems.append(f"{name}: stop_grace_period {s.get('stop_grace_period', '10s (default)')} must exceed the shutdown grace {grace:g}s by {GRACE_MARGIN}s")
        port = metrics_port(argv, senv)
        if (name, port) not in targets:
            problems.append(f"{name}: Prometheus does not scrape {name}:{port} (targets {targets})")
    if not workers:
        problems.append("no worker service (pythia run)")
    svcs = c["services"]
    for n, _ in targets:
        if n not in svcs:
            problems.append(f"prometheus.yml scrapes {n}, not a compose service")
    ds = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    for d in ds.get("datasources") or []:
        m = re.fullmatch(r"http://([\w-]+):(\d+)/?", d.get("url", ""))
        if not m or m.group(1) not in svcs:
            problems.append(f"Grafana data source URL {d.get('url')} is not a compose service")
    expect(problems)
    return "stop_grace_period covers the shutdown grace, Prometheus scrapes the metrics port"


# --------------------------------------------------------------------------------------------
# 3. Metrics
# --------------------------------------------------------------------------------------------


def readme_metrics() -> set[str]:
    names = set()
    for line in README.read_text().splitlines():
        if line.startswith("| `pythia_"):
            names.add(line.split("`")[1])
    return names


def metric_names(text: str) -> set[str]:
    return {HISTOGRAM_SUFFIX.sub("", m) for m in METRIC_RE.findall(text)}


def metric_sources() -> list[Path]:
    return [DASHBOARD, K8S / "prometheusrule.yaml", *sorted((K8S / "autoscaling").glob("*.yaml")), DEPLOY / "prometheus-adapter" / "values.yaml"]


def check_metrics(path: Path, documented: set[str], at_least: int) -> str:
    if not documented:
        raise Fail("no `| `pythia_` rows found in README.md's metric table")
    used = metric_names(path.read_text())
    unknown = sorted(used - documented)
    if unknown:
        raise Fail(*(f"{m} is not in the README's metric table (a typo, or a metric the worker does not export)" for m in unknown))
    if len(used) < at_least:
        raise Fail(f"expected at least {at_least} metrics, found {len(used)}")
    return f"{len(used)} metric{'' if len(used) == 1 else 's'}, all exported" if used else "names no metric"


def check_dashboard() -> str:
    d = json.loads(DASHBOARD.read_text())
    problems = []
    tvars = {v.get("name"): v for v in (d.get("templating") or {}).get("list", [])}
    dsv = tvars.get("datasource")
    if not dsv or dsv.get("type") != "datasource" or dsv.get("query") != "prometheus":
        problems.append("no `datasource` template variable of type datasource (prometheus)")
    qv = tvars.get("queue")
    if not qv or "queue" not in json.dumps(qv.get("query", "")):
        problems.append("no `queue` template variable over the queue label")
    panels = []
    for p in d.get("panels", []):
        panels.append(p)
        panels += p.get("panels", [])  # collapsed rows
    ids = [p.get("id") for p in panels]
    if len(set(ids)) != len(ids):
        problems.append("duplicate panel ids")
    exprs = []
    for p in panels:
        if p.get("type") == "row":
            continue
        title = p.get("title", "?")
        if (p.get("datasource") or {}).get("uid") != "${datasource}":
            problems.append(f"panel {title!r} does not use the ${{datasource}} variable")
        g = p.get("gridPos") or {}
        if not all(k in g for k in ("x", "y", "w", "h")) or g["x"] + g["w"] > 24:
            problems.append(f"panel {title!r}: bad gridPos {g}")
        if not p.get("targets"):
            problems.append(f"panel {title!r} has no query")
        for t in p.get("targets", []):
            e = t.get("expr", "")
            exprs.append(e)
            if (t.get("datasource") or {}).get("uid") != "${datasource}":
                problems.append(f"panel {title!r}: a query does not use ${{datasource}}")
            if e.count("(") != e.count(")") or e.count("{") != e.count("}"):
                problems.append(f"panel {title!r}: unbalanced brackets in {e}")
            if "histogram_quantile" in e:
                hq = re.search(r"histogram_quantile\(0?\.\d+, sum by \(([^)]*)\) \(rate\(pythia_\w+_bucket\{", e)
                if not hq or "le" not in [x.strip() for x in hq.group(1).split(",")]:
                    problems.append(f"panel {title!r}: histogram_quantile must take sum by (le) (rate(..._bucket{{...}})): {e}")
            for m in METRIC_RE.findall(e):
                # Breakers and the Redis client are per worker, not per queue.
                if not m.startswith(("pythia_circuit_breaker", "pythia_redis_")) and 'queue=~"$queue"' not in e:
                    problems.append(f"panel {title!r}: {m} is not filtered by $queue")
                    break
    joined = "\n".join(exprs)
    required = {
        "throughput by outcome": r"sum by \(outcome\) \(rate\(pythia_messages_total",
        "processing latency percentiles": r"histogram_quantile\(0\.\d+, .*pythia_processing_seconds_bucket",
        "end-to-end latency percentiles": r"histogram_quantile\(0\.\d+, .*pythia_end_to_end_latency_seconds_bucket",
        "in flight": r"pythia_in_flight_messages",
        "queue depth": r"pythia_queue_depth",
        "queue in flight": r"pythia_queue_in_flight",
        "scheduled": r"pythia_queue_scheduled",
        "oldest age": r"pythia_queue_oldest_age_seconds",
        "dead letters": r"pythia_dead_letters",
        "circuit breaker state": r"pythia_circuit_breaker_state",
        "broker reconnects": r"pythia_broker_reconnects_total",
        "broker errors": r"pythia_broker_errors_total",
        "reclaimed": r"pythia_reclaimed_total",
    }
    for what, rx in required.items():
        if not re.search(rx, joined):
            problems.append(f"no panel shows {what} ({rx})")
    expect(problems)
    missing = sorted(readme_metrics() - metric_names(joined))
    return f"{len(panels)} panels" + (f"; not shown: {', '.join(missing)}" if missing else "; every exported metric shown")


# --------------------------------------------------------------------------------------------
# 4. Dockerfiles
# --------------------------------------------------------------------------------------------

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
                "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL", "MAINTAINER"}


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        s = line.strip()
        if not buf and (not s or s.startswith("#")):
            continue
        if buf and s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        buf += s
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(instrs: list[tuple[str, str]]) -> list[dict]:
    """Stages: {'from': image (ARGs substituted), 'name': alias, 'instrs': [...]}."""
    args, out = {}, []
    for ins, rest in instrs:
        if ins == "ARG" and not out:
            k, _, v = rest.partition("=")
            args[k] = v.strip('"')
        elif ins == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda mm: args.get(mm.group(1) or mm.group(2), ""), m.group(1))
            out.append({"from": image, "name": m.group(2), "instrs": []})
        elif out:
            out[-1]["instrs"].append((ins, rest))
    return out


def workspace_rust_version() -> tuple[int, int]:
    m = re.search(r'^rust-version\s*=\s*"(\d+)\.(\d+)', (ROOT / "Cargo.toml").read_text(), re.M)
    return (int(m.group(1)), int(m.group(2))) if m else (1, 0)


def check_dockerfile(path: Path, binary: str | None) -> str:
    instrs = dockerfile(path)
    problems = []
    for ins, _ in instrs:
        if ins not in INSTRUCTIONS:
            problems.append(f"unknown instruction {ins}")
    st = stages(instrs)
    if len(st) < 2:
        raise Fail(f"not a multi-stage build ({len(st)} stage)")
    builder, final = st[0], st[-1]
    m = re.fullmatch(r"rust:(\d+)\.(\d+)(?:\.\d+)?-(\w+)", builder["from"])
    if not m:
        problems.append(f"the builder is {builder['from']!r}, expected the official rust:<version>-<debian> image")
    else:
        if (int(m.group(1)), int(m.group(2))) < workspace_rust_version():
            problems.append(f"rust {m.group(1)}.{m.group(2)} is older than the workspace's rust-version {workspace_rust_version()}")
        codename = m.group(3)
        if not (final["from"] == f"debian:{codename}-slim" or final["from"].startswith(f"gcr.io/distroless/cc-debian")):
            problems.append(f"runtime {final['from']!r} is not debian:{codename}-slim or distroless/cc (glibc must match the builder)")
    names = {s["name"] for s in st if s["name"]}
    for s in st:
        for ins, rest in s["instrs"]:
            fm = re.search(r"--from=(\S+)", rest)
            if ins == "COPY" and fm and fm.group(1) not in names:
                problems.append(f"COPY --from={fm.group(1)}: no such stage")
            if ins in ("ENV", "ARG", "LABEL") and re.search(r"(PASSWORD|SECRET|TOKEN|REDIS_URL)", rest, re.I):
                problems.append(f"{ins} {rest!r}: a secret baked into the image")
            if re.search(r"redis://[^\s\"']*:[^\s\"'@]+@", rest):
                problems.append(f"{ins}: a Redis URL with a password")
    fi = dict((ins, rest) for ins, rest in final["instrs"])
    user = fi.get("USER", "")
    if not re.fullmatch(r"[1-9]\d*(?::\d+)?", user):
        problems.append(f"the runtime stage's USER is {user!r}: use a numeric non-root uid (runAsNonRoot checks it)")
    if "9090" not in fi.get("EXPOSE", "").split():
        problems.append("the runtime stage does not EXPOSE 9090")
    try:
        ep = json.loads(fi.get("ENTRYPOINT", "null"))
    except json.JSONDecodeError:
        ep = None
    if not isinstance(ep, list) or not ep:
        problems.append("ENTRYPOINT is not in exec (JSON) form")
    else:
        copied = [rest for ins, rest in final["instrs"] if ins == "COPY"]
        if not any(re.search(rf"/usr/local/bin/{re.escape(ep[0])}$", c) for c in copied):
            problems.append(f"ENTRYPOINT {ep[0]} is not copied to /usr/local/bin in the runtime stage")
    if binary:
        runs = " ".join(rest for ins, rest in builder["instrs"] if ins == "RUN")
        if f"target/release/{binary}" not in runs:
            problems.append(f"the builder does not take target/release/{binary} (the [[bin]] of pythia-cli)")
    ignore = path.with_name(path.name + ".dockerignore")
    if not ignore.is_file():
        problems.append(f"{rel(ignore)} is missing (without it target/ and .git go into the build context)")
    expect(problems)
    return f"{builder['from']} -> {final['from']}, USER {user}, ENTRYPOINT {ep}"


def cargo_commands(shell: str) -> list[list[str]]:
    """Every `cargo build ...` command in a shell fragment, as argv lists."""
    out = []
    for piece in re.split(r"&&|\|\||;|\n", shell):
        try:
            toks = shlex.split(piece, comments=True)
        except ValueError:
            continue
        while toks and re.match(r"--[\w-]+=", toks[0]):  # RUN --mount=... options
            toks.pop(0)
        if toks[:2] == ["cargo", "build"]:
            out.append(toks)
    return out


def check_build_command() -> str:
    ci = [c for line in CI_RUN.read_text().splitlines() for c in cargo_commands(line)]
    if len(ci) != 1:
        raise Fail(f"expected one `cargo build` line in .ci/run, found {len(ci)}")
    problems = []
    for want in ("--release", "--locked", "pythia-cli"):
        if want not in ci[0]:
            problems.append(f".ci/run builds with `{' '.join(ci[0])}`: no {want}")
    st = stages(dockerfile(DEPLOY / "Dockerfile"))
    runs = [rest for ins, rest in st[0]["instrs"] if ins == "RUN"]
    found = [c for r in runs for c in cargo_commands(r)]
    if len(found) != 1:
        problems.append(f"expected one `cargo build` in the Dockerfile's builder stage, found {len(found)}")
    elif found[0] != ci[0]:
        problems.append(f"the Dockerfile builds with `{' '.join(found[0])}`, CI with `{' '.join(ci[0])}`")
    expect(problems)
    return f"`{' '.join(ci[0])}` in both"


def check_image_tls() -> str:
    """The image's `cargo build` enables pythia-cli's `tls` feature: rediss:// works in it."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11
        raise Fail("needs Python 3.11+ (tomllib) to read pythia-cli/Cargo.toml")
    manifest = tomllib.loads((ROOT / "pythia-cli" / "Cargo.toml").read_text())
    features = manifest.get("features", {})
    if "tls" not in features:
        raise Fail("pythia-cli/Cargo.toml has no `tls` feature")
    st = stages(dockerfile(DEPLOY / "Dockerfile"))
    found = [c for ins, rest in st[0]["instrs"] if ins == "RUN" for c in cargo_commands(rest)]
    if len(found) != 1:
        raise Fail(f"expected one `cargo build` in the Dockerfile's builder stage, found {len(found)}")
    cmd = found[0]
    asked = set()
    for i, tok in enumerate(cmd):
        if tok in ("--features", "-F") and i + 1 < len(cmd):
            asked.update(re.split(r"[ ,]+", cmd[i + 1]))
        elif tok.startswith("--features="):
            asked.update(re.split(r"[ ,]+", tok.split("=", 1)[1]))
    defaults = set() if "--no-default-features" in cmd else set(features.get("default", []))
    if "tls" not in defaults | asked | {a.removeprefix("pythia-cli/") for a in asked}:
        raise Fail(f"`{' '.join(cmd)}` builds pythia without the `tls` feature: rediss:// URLs would fail "
                   "in the image (add it to pythia-cli's default features or pass --features tls)")
    return "tls " + ("by default" if "tls" in defaults else "via --features")


def check_worker_image_default() -> str:
    """deploy/Dockerfile.worker's default build is a long-running worker that serves the probes:
    its build arguments name an existing example or bin of an existing package, whose source
    serves pythia's MetricsServer and does not stop once drained (no burst mode)."""
    st = stages(dockerfile(DEPLOY / "Dockerfile.worker"))
    args = {}
    for ins, rest in st[0]["instrs"]:
        if ins == "ARG":
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip().strip('"')
    for k in ("PACKAGE", "CARGO_TARGET", "BINARY"):
        if not args.get(k):
            raise Fail(f"the builder stage has no default for ARG {k}")
    m = re.fullmatch(r"--(example|bin)\s+(\S+)", args["CARGO_TARGET"])
    if not m:
        raise Fail(f"CARGO_TARGET {args['CARGO_TARGET']!r} is not `--example NAME` or `--bin NAME`")
    kind, name = m.groups()
    package_dir = None
    for manifest in ROOT.glob("*/Cargo.toml"):
        if re.search(rf'^name\s*=\s*"{re.escape(args["PACKAGE"])}"', manifest.read_text(), re.M):
            package_dir = manifest.parent
    if package_dir is None:
        raise Fail(f"no workspace package named {args['PACKAGE']!r}")
    section = "example" if kind == "example" else "bin"
    targets = re.findall(rf'\[\[{section}\]\]\s*name\s*=\s*"([^"]+)"\s*path\s*=\s*"([^"]+)"',
                         (package_dir / "Cargo.toml").read_text())
    source = next((package_dir / p for n, p in targets if n == name), None)
    if source is None or not source.is_file():
        raise Fail(f"{args['PACKAGE']} has no {kind} {name!r} with a source file")
    want = f"target/release/{'examples/' if kind == 'example' else ''}{name}"
    problems = []
    if args["BINARY"] != want:
        problems.append(f"BINARY is {args['BINARY']!r}, cargo writes {want!r}")
    code = source.read_text()
    if "MetricsServer" not in code:
        problems.append(f"{rel(source)} serves no MetricsServer: /readyz would never answer")
    if re.search(r"with_burst\(\s*true\s*\)", code):
        problems.append(f"{rel(source)} runs in burst mode: it drains and exits instead of serving")
    expect(problems)
    return f"{kind} {name} ({rel(source)}): serves MetricsServer, no burst"


def dockerignore_patterns(path: Path) -> list[tuple[bool, re.Pattern]]:
    out = []
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        neg = s.startswith("!")
        s = s.lstrip("!").strip("/")
        rx = ""
        i = 0
        while i < len(s):
            if s.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif s.startswith("**", i):
                rx += ".*"
                i += 2
            elif s[i] == "*":
                rx += "[^/]*"
                i += 1
            elif s[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(s[i])
                i += 1
        out.append((neg, re.compile(rx + "$")))
    return out


def ignored(path: str, patterns) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for neg, rx in patterns:
        if any(rx.match(p) for p in prefixes):
            result = not neg
    return result


def check_dockerignore(path: Path) -> str:
    patterns = dockerignore_patterns(path)
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        files = [rel(p) for p in ROOT.rglob("*") if p.is_file() and not ignored(rel(p), [(False, re.compile(r"(\.git|target)(/.*)?$"))])]
    # Build inputs: every tracked file but deploy/, .ci/ and the dotfiles at the root
    # (.gitignore, .env.example), which no crate reads.
    needed = [f for f in files if not f.startswith(("deploy/", ".ci/")) and not re.fullmatch(r"\.[^/]+", f)]
    lost = [f for f in needed if ignored(f, patterns)]
    if lost:
        raise Fail(f"excludes files the build may need: {', '.join(lost[:10])}")
    for must in ("target/release/pythia", ".git/config", ".env"):
        if not ignored(must, patterns):
            raise Fail(f"does not exclude {must}")
    return f"keeps all {len(needed)} workspace files, drops target/, .git, .env"


# --------------------------------------------------------------------------------------------
# 5. Redis configs
# --------------------------------------------------------------------------------------------


def redis_conf(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        k, _, v = s.partition(" ")
        out[k.lower()] = v.strip()
    return out


def check_redis_conf_static() -> str:
    q = redis_conf(DEPLOY / "redis" / "queue.conf")
    c = redis_conf(DEPLOY / "redis" / "cache.conf")
    problems = []
    for k, v in {"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "everysec"}.items():
        if q.get(k) != v:
            problems.append(f"queue.conf: {k} is {q.get(k)!r}, expected {v!r}")
    if not q.get("save") or q.get("save") in ('""', "''"):
        problems.append("queue.conf: no RDB snapshots (save)")
    if "requirepass" in q:
        problems.append("queue.conf: requirepass in the file; pass it on the command line from REDIS_QUEUE_PASSWORD")
    if "requirepass" in c:
        problems.append("cache.conf: requirepass in the file")
    if c.get("maxmemory-policy") != "allkeys-lru":
        problems.append(f"cache.conf: maxmemory-policy {c.get('maxmemory-policy')!r}, expected allkeys-lru")
    if c.get("appendonly") != "no" or c.get("save") not in ('""', "''"):
        problems.append("cache.conf: persistence should be off (appendonly no, save \"\")")
    for name, text in (("queue.conf", (DEPLOY / "redis" / "queue.conf").read_text()), ("cache.conf", (DEPLOY / "redis" / "cache.conf").read_text())):
        if text.count("\n#") < 5:
            problems.append(f"{name}: the choices are not explained in comments")
    expect(problems)
    return "queue: noeviction, AOF everysec, RDB; cache: allkeys-lru, no persistence"


def resp(sock: socket.socket, *args: str) -> str:
    """One RESP command; the reply flattened to text."""
    msg = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
    sock.sendall(msg.encode())
    f = sock.makefile("rb")

    def read() -> str:
        line = f.readline().decode().rstrip("\r\n")
        t, rest = line[:1], line[1:]
        if t in "+-:":
            return ("ERR " if t == "-" else "") + rest
        if t == "$":
            n = int(rest)
            if n < 0:
                return ""
            data = f.read(n + 2)[:-2].decode()
            return data
        if t == "*":
            return " ".join(read() for _ in range(int(rest)))
        raise ValueError(f"bad reply {line!r}")

    return read()


@contextlib.contextmanager
def redis_server(conf: str, cwd: str, password: str):
    """A redis-server started with deploy/redis/<conf> and `--requirepass password` (the compose
    command line), on a free loopback port with its files in `cwd`; yields the port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [shutil.which("redis-server"), str(DEPLOY / "redis" / conf), "--requirepass", password,
         "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 10
        while True:
            if proc.poll() is not None:
                raise Fail(f"redis-server exited: {proc.stdout.read().strip()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise Fail("redis-server did not start within 10 s")
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def check_redis_conf_live(conf: str, expected: dict[str, str]) -> str:
    if not shutil.which("redis-server"):
        skip(f"redis: {conf} loads in redis-server", "redis-server is not installed")
        return "skip"
    password = secrets.token_hex(16)
    with tempfile.TemporaryDirectory() as tmp, redis_server(conf, tmp, password) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            if not resp(sock, "PING").startswith("ERR"):
                raise Fail("answers PING without a password: --requirepass did not take")
            if resp(sock, "AUTH", password) != "OK":
                raise Fail("AUTH with the --requirepass password failed")
            problems = []
            for k, v in expected.items():
                got = resp(sock, "CONFIG", "GET", k).partition(" ")[2]
                if got != v:
                    problems.append(f"CONFIG GET {k} = {got!r}, expected {v!r}")
            version = resp(sock, "INFO", "server")
            m = re.search(r"redis_version:(\S+)", version)
        expect(problems)
        return f"redis {m.group(1) if m else '?'}: " + ", ".join(f"{k}={v or chr(34) * 2}" for k, v in expected.items())


BACKUP = DEPLOY / "backup"
# What the backup check writes and compares: every kind of key a queue holds.
BACKUP_FIXTURE = [
    ("RPUSH", "jobs", "a", "b", "c"),
    ("HSET", "jobs:inflight:w1", "m1", "payload"),
    ("ZADD", "jobs:scheduled", "1700000000000", "m2"),
    ("XADD", "events", "1-1", "body", "x"),
    ("XGROUP", "CREATE", "events", "workers", "0"),
    ("SET", "jobs:config", "v"),
]


def dump_keys(port: int, password: str) -> dict[str, str]:
    """Every key of the server, as `redis-cli --no-raw` shows its type and content."""
    def cli(*args: str) -> str:
        return subprocess.run(["redis-cli", "-p", str(port), *args], check=True, capture_output=True,
                              text=True, env={**os.environ, "REDISCLI_AUTH": password}).stdout
    out = {}
    for key in sorted(cli("--raw", "KEYS", "*").split()):
        kind = cli("--raw", "TYPE", key).strip()
        read = {"list": ("LRANGE", key, "0", "-1"), "hash": ("HGETALL", key),
                "zset": ("ZRANGE", key, "0", "-1", "WITHSCORES"), "string": ("GET", key),
                "stream": ("XRANGE", key, "-", "+")}[kind]
        content = cli(*read)
        if kind == "stream":
            content += cli("XINFO", "GROUPS", key)
        out[key] = f"{kind}: {content}"
    return out


def check_backup_live() -> str:
    if not (shutil.which("redis-server") and shutil.which("redis-cli") and shutil.which("redis-check-rdb")):
        skip("backup: redis-backup.sh and redis-restore.sh", "redis-server, redis-cli or redis-check-rdb is not installed")
        return "skip"
    password = secrets.token_hex(16)
    env = {**os.environ, "REDISCLI_AUTH": password, "BACKUP_KEEP": "1"}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        tmp = Path(tmp)
        for d in ("live", "backups", "restored"):
            (tmp / d).mkdir()
        with redis_server("queue.conf", str(tmp / "live"), password) as port:
            env["REDIS_ADDRESS"] = f"127.0.0.1:{port}"
            for cmd in BACKUP_FIXTURE:
                subprocess.run(["redis-cli", "-p", str(port), *cmd], check=True, capture_output=True, env=env)
            before = dump_keys(port, password)
            runs = []
            for _ in range(2):
                runs.append(subprocess.run(["sh", str(BACKUP / "redis-backup.sh"), str(tmp / "backups")],
                                           capture_output=True, text=True, env=env, timeout=60))
                time.sleep(1.1)  # backups are named by the second
            env["REDIS_ADDRESS"] = "127.0.0.1:1"
            refused = subprocess.run(["sh", str(BACKUP / "redis-backup.sh"), str(tmp / "backups")],
                                     capture_output=True, text=True, env=env, timeout=60)
        problems = [f"backup {i + 1} exited {r.returncode}: {r.stderr.strip()[-300:]}" for i, r in enumerate(runs) if r.returncode]
        kept = sorted(p.name for p in (tmp / "backups").iterdir())
        if len(kept) != 1 or not re.fullmatch(r"queue-\d{8}T\d{6}Z\.rdb", kept[0]):
            problems.append(f"with BACKUP_KEEP=1 after two backups the directory holds {kept}, expected one queue-<time>.rdb")
        if refused.returncode == 0:
            problems.append("a backup of an unreachable Redis exited 0")
        if sorted(p.name for p in (tmp / "backups").iterdir()) != kept:
            problems.append("a failed backup changed the backup directory")
        expect(problems)
        restore = subprocess.run(["sh", str(BACKUP / "redis-restore.sh"), str(tmp / "backups" / kept[0]),
                                  str(tmp / "restored")], capture_output=True, text=True, timeout=120)
        if restore.returncode:
            raise Fail(f"redis-restore.sh exited {restore.returncode}: {restore.stderr.strip()[-300:]}")
        again = subprocess.run(["sh", str(BACKUP / "redis-restore.sh"), str(tmp / "backups" / kept[0]),
                                str(tmp / "restored")], capture_output=True, text=True, timeout=60)
        if again.returncode == 0:
            problems.append("redis-restore.sh into a non-empty directory exited 0")
        with redis_server("queue.conf", str(tmp / "restored"), password) as port:
            after = dump_keys(port, password)
        if after != before:
            missing = sorted(set(before) - set(after))
            changed = sorted(k for k in before if k in after and after[k] != before[k])
            problems.append(f"the queue Redis started on the restored directory differs: missing {missing}, changed {changed}")
        expect(problems)
        return f"{len(before)} keys backed up (one of two kept), restored and read back with queue.conf (AOF on)"


def check_k8s_backup() -> str:
    k = yaml.safe_load((BACKUP / "kustomization.yaml").read_text())
    problems = []
    listed = k.get("resources") or []
    for r in listed:
        if not (BACKUP / r).is_file():
            problems.append(f"resource {r} does not exist")
    docs = [d for r in listed if (BACKUP / r).is_file() for d in load_yaml_docs(BACKUP / r)]
    jobs = [d for d in docs if d.get("kind") == "CronJob"]
    pvcs = {d["metadata"]["name"] for d in docs if d.get("kind") == "PersistentVolumeClaim"}
    generated = {g["name"]: g.get("files") or [] for g in k.get("configMapGenerator") or []}
    for files in generated.values():
        for f in files:
            if not (BACKUP / f).is_file():
                problems.append(f"configMapGenerator file {f} does not exist")
    if len(jobs) != 1:
        raise Fail(*problems, f"expected one CronJob, found {len(jobs)}")
    pod = jobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if jobs[0]["spec"].get("concurrencyPolicy") != "Forbid":
        problems.append("the CronJob may run two backups at once (concurrencyPolicy is not Forbid)")
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    for v in volumes.values():
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        if claim and claim not in pvcs:
            problems.append(f"volume {v['name']}: claim {claim} is not among the resources")
        cm = (v.get("configMap") or {}).get("name")
        if cm and cm not in generated:
            problems.append(f"volume {v['name']}: ConfigMap {cm} is not generated by the kustomization")
    (c,) = pod["containers"]
    script = next((a for a in c.get("command", []) if a.endswith(".sh")), "")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
    mount = next((mp for mp in mounts if script.startswith(mp + "/")), None)
    if not mount or Path(script).name not in generated.get(volumes[mounts[mount]].get("configMap", {}).get("name"), []):
        problems.append(f"the CronJob runs {script!r}, which no mounted script ConfigMap holds")
    env = {e["name"]: e for e in c.get("env") or []}
    for name in ("REDIS_ADDRESS", "REDISCLI_AUTH"):
        ref = ((env.get(name) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            problems.append(f"{name} does not come from a Secret")
        elif ref["name"] != "pythia-redis-queue" or not secret_has(ref["name"], ref["key"]):
            problems.append(f"{name}: Secret {ref['name']} key {ref['key']} is not the queue Redis's in secret.example.yaml")
    if "REDISCLI_AUTH" in " ".join(c.get("command", []) + c.get("args", [])):
        problems.append("the password is on the command line")
    expect(problems)
    return f"CronJob {jobs[0]['metadata']['name']} ({jobs[0]['spec']['schedule']}) writes to {', '.join(sorted(pvcs))}"


# --------------------------------------------------------------------------------------------
# 6. Docs
# --------------------------------------------------------------------------------------------


def check_docs() -> str:
    problems = []
    text = README.read_text()
    m = re.search(r"^## Deploy\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        raise Fail("README.md has no `## Deploy` section")
    docs = {"README.md ## Deploy": m.group(1), "deploy/README.md": (DEPLOY / "README.md").read_text()}
    n = 0
    for where, body in docs.items():
        for sub in ("docker compose", "Kubernetes", "KEDA", "Grafana"):
            if sub.lower() not in body.lower():
                problems.append(f"{where}: nothing about {sub}")
        for path in set(re.findall(r"(?<![\w./-])((?:deploy/|\.env\.example)[\w./-]*)", body)):
            path = path.rstrip(".")
            n += 1
            if not (ROOT / path).exists():
                problems.append(f"{where}: names {path}, which does not exist")
        if where == "deploy/README.md":
            # File names in backticks, relative to deploy/ (or to the repository root).
            for name in set(re.findall(r"`([\w.-]+(?:/[\w.-]*)*)`", body)):
                if name.rstrip("/") in ("target", ".git", ".env"):  # what the build context drops
                    continue
                if "/" in name or re.search(r"\.(ya?ml|json|conf|md|py|example|dockerignore)$", name) or name.startswith("Dockerfile"):
                    n += 1
                    if not ((DEPLOY / name).exists() or (ROOT / name).exists() or any(DEPLOY.rglob(name))):
                        problems.append(f"{where}: names {name}, which does not exist")
    expect(problems)
    return f"{n} paths named, all exist"


# --------------------------------------------------------------------------------------------


def main() -> int:
    run_check("k8s: every manifest parses, with apiVersion, kind and name", check_k8s_parse)
    try:
        resources = k8s_resources()
    except Exception:
        resources = []
    for path, doc in resources:
        key = (doc.get("apiVersion"), doc.get("kind"))
        label = f"{rel(path)} {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
        if key in CRD_KINDS:
            continue  # checked field by field below
        run_check(f"k8s schema: {label}", check_k8s_schema, path, doc)
    for name, fn in [
        ("k8s: Deployment probes, grace period, resources, security, POD_NAME, REDIS_URL from the Secret", check_k8s_deployment),
        ("k8s: Service and PodDisruptionBudget select the worker pods", check_k8s_service_pdb),
        ("k8s: secret.example.yaml holds placeholders, no real secret", check_k8s_secret_example),
        ("k8s CRD: ServiceMonitor (monitoring.coreos.com/v1) matches the Service", check_k8s_servicemonitor),
        ("k8s CRD: PrometheusRule (monitoring.coreos.com/v1) alerts are well formed", check_k8s_prometheusrule),
        ("k8s CRD: KEDA ScaledObjects/TriggerAuthentication and the HPA target the Deployment and queue", check_k8s_autoscalers),
        ("k8s: kustomization.yaml lists the core resources", check_k8s_kustomization),
        ("cli: the Deployment's args and PYTHIA_*/REDIS_URL variables exist in the CLI's arguments", check_k8s_cli),
        ("compose: images/builds set, referenced files exist", check_compose_files),
        ("compose: ports are sane", check_compose_ports),
        ("compose: durable queue Redis, REDIS_URL and backup use its password, the cache its own", check_compose_redis),
        ("compose: every ${VARIABLE} is documented in .env.example", check_compose_env_documented),
        ("compose: worker stop grace and Prometheus/Grafana wiring", check_compose_worker),
        ("cli: compose commands' --flags and variables exist in the CLI's arguments", check_compose_cli),
    ]:
        run_check(name, fn)
    documented = readme_metrics()
    for src in metric_sources():
        at_least = 10 if src == DASHBOARD else 5 if src.name == "prometheusrule.yaml" else 0
        run_check(f"metrics: {rel(src)} names only metrics in the README's table", check_metrics, src, documented, at_least)
    run_check("grafana: dashboard variables, panels and queries", check_dashboard)
    run_check("docker: deploy/Dockerfile builds with the same cargo command as .ci/run", check_build_command)
    run_check("docker: deploy/Dockerfile builds pythia with TLS (rediss://)", check_image_tls)
    bin_name = re.search(r'\[\[bin\]\]\s*name\s*=\s*"([^"]+)"', (ROOT / "pythia-cli" / "Cargo.toml").read_text())
    run_check("docker: deploy/Dockerfile", check_dockerfile, DEPLOY / "Dockerfile", bin_name.group(1) if bin_name else "pythia")
    run_check("docker: deploy/Dockerfile.worker", check_dockerfile, DEPLOY / "Dockerfile.worker", None)
    run_check("docker: deploy/Dockerfile.worker's default build is a long-running worker serving the probes",
              check_worker_image_default)
    for ig in ("Dockerfile.dockerignore", "Dockerfile.worker.dockerignore"):
        run_check(f"docker: deploy/{ig} keeps the workspace, drops build output and secrets", check_dockerignore, DEPLOY / ig)
    run_check("redis: queue.conf and cache.conf settings", check_redis_conf_static)
    run_check("redis: queue.conf loads in redis-server with --requirepass", check_redis_conf_live, "queue.conf",
              {"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "everysec", "save": "3600 1 300 100 60 10000"})
    run_check("redis: cache.conf loads in redis-server with --requirepass", check_redis_conf_live, "cache.conf",
              {"maxmemory-policy": "allkeys-lru", "appendonly": "no", "save": ""})
    run_check("k8s: deploy/backup's CronJob reads the queue Secret and runs the generated scripts", check_k8s_backup)
    run_check("backup: redis-backup.sh and redis-restore.sh against a real redis-server with queue.conf", check_backup_live)
    run_check("docs: README Deploy section and deploy/README.md name existing files", check_docs)
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
