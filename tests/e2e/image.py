"""What the Dockerfile builds, read from the Dockerfile itself (the machines here have no Docker engine).

`image_files` lists what its COPY lines bring in after .dockerignore, `stage_image` lays that out in a
directory, `runtime_venv` installs requirements-runtime.lock alone into a venv (cached per lock
content, so only the first run pays for it), and `Dockerfile.env` / `.healthcheck` are its ENV and
HEALTHCHECK. tests/e2e/test_container_image.py starts the bot from exactly that.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dockerfile:
    """A Dockerfile's instructions (COPY, ENV, USER, VOLUME, HEALTHCHECK, ENTRYPOINT, CMD…), in order."""

    instructions: list[tuple[str, str]]

    @classmethod
    def read(cls, path: Path = REPO / "Dockerfile") -> Dockerfile:
        """Parse the file: comments dropped, backslash continuations joined."""
        joined = re.sub(
            r"\\\n", " ", "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        )
        instructions = []
        for line in joined.splitlines():
            if line.strip():
                keyword, _, rest = line.strip().partition(" ")
                instructions.append((keyword.upper(), rest.strip()))
        return cls(instructions)

    def all(self, keyword: str) -> list[str]:
        """The arguments of every `keyword` instruction, in order."""
        return [rest for key, rest in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        """The arguments of the last `keyword` instruction."""
        (*_, rest) = self.all(keyword)
        return rest

    @property
    def copies(self) -> list[tuple[list[str], str]]:
        """(sources, destination) of every COPY."""
        result = []
        for rest in self.all("COPY"):
            words = [w for w in shlex.split(rest) if not w.startswith("--")]
            result.append((words[:-1], words[-1]))
        return result

    @property
    def env(self) -> dict[str, str]:
        """Every ENV KEY=VALUE."""
        values: dict[str, str] = {}
        for rest in self.all("ENV"):
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                values[key] = value
        return values

    @property
    def healthcheck(self) -> list[str]:
        """The HEALTHCHECK's command (exec or shell form), without its options."""
        _options, _, command = self.last("HEALTHCHECK").partition("CMD ")
        return exec_form(command)


def exec_form(text: str) -> list[str]:
    """A JSON-array instruction argument as a list, or a shell-form one as `sh -c` would split it."""
    import json

    text = text.strip()
    return json.loads(text) if text.startswith("[") else shlex.split(text)


def _pattern(glob: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over a context-relative path."""
    out, i = "", 0
    glob = glob.strip().lstrip("/")
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + r"\Z")


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore leaves `path` out (a pattern matching it or one of its parent directories;
    `!pattern` lines take a path back, the last matching line wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for line in patterns:
        negated = line.startswith("!")
        regex = _pattern(line[1:] if negated else line)
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def image_files(dockerfile: Dockerfile, context: Path = REPO) -> dict[str, Path]:
    """Path in the image (relative to WORKDIR) → file in the build context, for every COPY."""
    lines = (context / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    files: dict[str, Path] = {}
    for sources, destination in dockerfile.copies:
        for source in sources:
            origin = context / source
            if origin.is_dir():
                base = destination.rstrip("/") if destination not in ("./", ".") else origin.name
                for path in sorted(origin.rglob("*")):
                    relative = path.relative_to(context).as_posix()
                    if path.is_file() and not ignored(relative, patterns):
                        inside = path.relative_to(origin).as_posix()
                        files[os.path.normpath(f"{base}/{inside}")] = path
            elif not ignored(source, patterns):
                target = destination.rstrip("/") + "/" + origin.name if destination.endswith("/") else destination
                files[os.path.normpath(target)] = origin
    return files


def stage_image(dockerfile: Dockerfile, into: Path) -> dict[str, Path]:
    """Copy exactly the image's files under `into` (its WORKDIR); returns them."""
    files = image_files(dockerfile)
    for inside, origin in files.items():
        (into / inside).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, into / inside)
    return files


def runtime_venv(lock: Path = REPO / "requirements-runtime.lock") -> Path:
    """A venv holding requirements-runtime.lock and nothing else (`--no-deps`, then `pip check`, so a
    dependency missing from the lock fails here); cached by the lock's content, built once."""
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "jitbot-tests"
    venv = cache / f"runtime-venv-{digest}"
    if (venv / "ok").exists():
        return venv
    cache.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="runtime-venv-", dir=cache))
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", str(building)], check=True)
    pip = [str(building / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "-r", str(lock)], check=True, capture_output=True)
    subprocess.run([*pip, "check"], check=True, capture_output=True)
    (building / "ok").write_text(digest)
    try:
        building.rename(venv)
    except OSError:  # another run built it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return venv
