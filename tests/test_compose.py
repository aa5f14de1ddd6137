"""docker-compose.yml, docker/ and the Procfile: health checks, start order, and commands
that only refer to modules, files and programs the project really has.

Every check is generic: a service or Procfile line added later (worker, beat, flower) is
held to the same rules without touching this file.
"""

import itertools
import json
import re
import shlex
import tomllib
from functools import cache
from importlib import metadata, util
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
PROCFILE = ROOT / "Procfile"
SHELLS = {"python", "python3", "sh", "/bin/sh", "bash", "/bin/bash"}
# Shell words that start a line of a script without running a program.
SHELL_SYNTAX = set("set if then else elif fi case esac for while do done [ export cd shift".split())
SHELL_SYNTAX |= set("echo exit trap ;; { }".split())


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def environment(name: str) -> dict[str, str]:
    """A service's environment, whichever of the two compose spellings it uses."""
    env = services()[name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def built() -> list[str]:
    """Services whose image is built from this repository (the others are upstream images)."""
    return sorted(name for name, spec in services().items() if "build" in spec)


# -- where commands come from -----------------------------------------------------------


def _words(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def _instructions(keyword: str) -> list[str]:
    """Arguments of every `KEYWORD ...` instruction in the final stage of the Dockerfile."""
    final_stage = re.split(r"(?im)^FROM\s", DOCKERFILE.read_text())[-1]
    pattern = rf"(?im)^{keyword}\s+(.*(?:\\\n.*)*)"
    return [match.replace("\\\n", " ") for match in re.findall(pattern, final_stage)]


def _dockerfile_words(keyword: str) -> list[list[str]]:
    found = []
    for argument in _instructions(keyword):
        argument = argument.strip()
        found.append(json.loads(argument) if argument.startswith("[") else shlex.split(argument))
    return found


def _workdir() -> str:
    return _instructions("WORKDIR")[-1].strip().rstrip("/")


def _script_lines(path: Path) -> list[list[str]]:
    """The program-running lines of a shell script, as words (control syntax skipped)."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if not line or line.startswith("#") or re.match(r"^[\w|*\"-]+\)$", line):
            continue
        words = shlex.split(line)
        if words[0] not in SHELL_SYNTAX:
            lines.append(words)
    return lines


def _entrypoint_scripts() -> list[Path]:
    """Repository scripts the image runs as its entry point."""
    scripts = []
    for words in _dockerfile_words("ENTRYPOINT"):
        scripts += [p for p in map(_repo_path, words) if p is not None and p.suffix == ".sh"]
    return scripts


def _procfile() -> dict[str, str]:
    entries = re.findall(r"(?m)^([A-Za-z0-9_-]+):\s*(.+)$", PROCFILE.read_text())
    return dict(entries)


def commands() -> list[tuple[str, list[str]]]:
    """(where, words) for everything the containers and `make run` execute."""
    found: list[tuple[str, list[str]]] = []
    for name in built():
        spec = services()[name]
        for key in ("command", "entrypoint"):
            if key in spec:
                found.append((f"compose {name}.{key}", _words(spec[key])))
        test = _words(spec.get("healthcheck", {}).get("test", []))
        if test[:1] == ["CMD"]:
            found.append((f"compose {name}.healthcheck", test[1:]))
        elif test[:1] == ["CMD-SHELL"]:
            found.append((f"compose {name}.healthcheck", shlex.split(test[1])))
    for keyword in ("ENTRYPOINT", "CMD"):
        found += [(f"Dockerfile {keyword}", words) for words in _dockerfile_words(keyword)]
    for script in _entrypoint_scripts():
        found += [(str(script.relative_to(ROOT)), words) for words in _script_lines(script)]
    found += [(f"Procfile {name}", shlex.split(cmd)) for name, cmd in _procfile().items()]
    return found


# -- what a command may refer to --------------------------------------------------------


def _repo_path(word: str) -> Path | None:
    """The repository file an image path or a relative path names, if it names one."""
    if not re.fullmatch(r"[\w./-]+\.(sh|py|ini|toml)", word):
        return None
    workdir = _workdir() + "/"
    relative = word[len(workdir) :] if word.startswith(workdir) else word
    return ROOT / relative.lstrip("/")


def _module_file(module: str) -> Path | None:
    """The project file for a dotted module, or None when it is not a project module."""
    parts = module.split(".")
    if not ((ROOT / parts[0]).is_dir() or (ROOT / f"{parts[0]}.py").is_file()):
        return None
    base = ROOT.joinpath(*parts)
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def _check_module(reference: str) -> None:
    """`pkg.module` or `pkg.module:attribute` exists (project code) or is importable."""
    module, _, attribute = reference.partition(":")
    path = _module_file(module)
    if path is None:
        assert util.find_spec(module) is not None, f"{module} is not installed"
        return
    assert path.is_file(), f"{reference}: {path.relative_to(ROOT)} does not exist"
    if attribute:
        defined = rf"(?m)^(?:async\s+def|def|class)\s+{attribute}\b|^{attribute}\s*(?::[^=\n]+)?="
        assert re.search(defined, path.read_text()), f"{reference}: no {attribute} in {path}"


def _module_references(words: list[str]) -> list[str]:
    """Modules a command names: `-m mod`, `-A mod`, `--app mod`, and `mod:attr` words."""
    found = []
    for flag, value in itertools.pairwise(words):
        if flag in ("-m", "-A", "--app"):
            found.append(value)
    found += [w.split("=", 1)[1] for w in words if w.startswith("--app=")]
    found += [w for w in words if re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", w)]
    return found


def _needed(words: list[str]) -> set[str]:
    """Repository files a command needs: modules it names, scripts, alembic's setup."""
    needed = {str(p.relative_to(ROOT)) for p in map(_repo_path, words) if p is not None}
    for reference in _module_references(words):
        path = _module_file(reference.partition(":")[0])
        if path is not None:
            needed.add(str(path.relative_to(ROOT)))
    if "alembic" in words[:2]:
        needed |= {"alembic.ini", "alembic/env.py"}
    return needed


def _copied() -> list[str]:
    """Repository paths the final stage of the Dockerfile copies into the image."""
    sources = []
    for words in _dockerfile_words("COPY"):
        if not any(w.startswith("--from") for w in words):
            sources += [w.rstrip("/") for w in words[:-1] if not w.startswith("--")]
    return sources


@cache
def _runtime_programs() -> frozenset[str]:
    """Console scripts of the project's runtime dependencies (what the image installs)."""
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[=<>~!; ]", requirement)[0] for requirement in requirements}
    return frozenset(
        script.name
        for name in names
        for script in metadata.distribution(name).entry_points
        if script.group == "console_scripts"
    )


def _entrypoint_modes() -> set[str]:
    """Words an entry point script handles itself (`if [ "$1" = "api" ]`, `api)`)."""
    modes: set[str] = set()
    for script in _entrypoint_scripts():
        text = script.read_text()
        modes |= set(re.findall(r'\$\{?1[^"]*"\s*=\s*"(\w+)"', text))
        modes |= set(re.findall(r"(?m)^\s*(\w+)\)", text))
    return modes


def _program(words: list[str]) -> str | None:
    """The program a command line runs (after `exec`, `env -u NAME` and VAR=value prefixes)."""
    rest = [w for w in words if not re.fullmatch(r"[A-Za-z_]\w*=.*", w)]
    if rest[:1] == ["exec"]:
        rest = rest[1:]
    if rest[:1] == ["env"]:  # coreutils, in every image: what it runs is what counts
        rest = rest[1:]
        while rest[:1] == ["-u"]:
            rest = rest[2:]
    if not rest or rest[0].startswith("$"):
        return None  # `exec "$@"`: whatever the container was given
    return rest[0]


COMMANDS = commands()
COMMAND_IDS = [f"{where}: {shlex.join(words)[:60]}" for where, words in COMMANDS]
# The Procfile runs in the checkout (`make run`); everything else runs in the image.
IMAGE_COMMANDS = [(where, words) for where, words in COMMANDS if not where.startswith("Procfile")]
IMAGE_COMMAND_IDS = [f"{where}: {shlex.join(words)[:60]}" for where, words in IMAGE_COMMANDS]


# -- the tests --------------------------------------------------------------------------


class TestServices:
    @pytest.mark.parametrize("name", sorted(services()))
    def test_every_service_has_a_health_check(self, name: str) -> None:
        check = services()[name].get("healthcheck", {})

        assert check.get("test"), f"{name} has no health check"
        assert not check.get("disable"), f"{name} disables its health check"

    @pytest.mark.parametrize("name", sorted(services()))
    def test_dependencies_are_waited_for_until_healthy(self, name: str) -> None:
        depends = services()[name].get("depends_on", {})

        assert isinstance(depends, dict), f"{name}: depends_on must name a condition"
        for other, how in depends.items():
            assert how.get("condition") == "service_healthy", f"{name} -> {other}"

    @pytest.mark.parametrize("name", built())
    def test_servers_in_urls_are_dependencies(self, name: str) -> None:
        urls = [value for key, value in environment(name).items() if key.endswith("_URL")]
        hosts = {re.sub(r"^.*@|:.*$", "", url.split("://", 1)[1].split("/")[0]) for url in urls}

        assert hosts <= set(services()[name].get("depends_on", {})), f"{name} must wait for {hosts}"

    def test_api_waits_for_postgres_and_redis(self) -> None:
        depends = services()["api"]["depends_on"]

        assert {"postgres", "redis"} <= set(depends)

    def test_postgres_keeps_its_data_in_a_named_volume(self) -> None:
        mounts = [str(v).split(":") for v in services()["postgres"].get("volumes", [])]

        named = {m[0] for m in mounts if m[1:2] == ["/var/lib/postgresql/data"]}
        assert named, "postgres must mount a volume at /var/lib/postgresql/data"
        assert named <= set(compose().get("volumes") or {}), "declare it under volumes:"

    @pytest.mark.parametrize("name", built())
    def test_no_secret_is_written_in_the_file(self, name: str) -> None:
        secret = environment(name).get("SECRET_KEY")

        assert secret is None or secret.startswith("${SECRET_KEY:?"), "it must come from the env"


class TestCommands:
    @pytest.mark.parametrize(("where", "words"), COMMANDS, ids=COMMAND_IDS)
    def test_modules_exist(self, where: str, words: list[str]) -> None:
        del where
        for reference in _module_references(words):
            _check_module(reference)

    @pytest.mark.parametrize(("where", "words"), COMMANDS, ids=COMMAND_IDS)
    def test_files_exist(self, where: str, words: list[str]) -> None:
        missing = sorted(path for path in _needed(words) if not (ROOT / path).is_file())

        assert not missing, f"{where} needs {missing}"

    @pytest.mark.parametrize(("where", "words"), COMMANDS, ids=COMMAND_IDS)
    def test_programs_are_installed_in_the_image(self, where: str, words: list[str]) -> None:
        program = _program(words)
        allowed = SHELLS | _runtime_programs() | _entrypoint_modes()

        assert program is None or program in allowed or _repo_path(program), (
            f"{where} runs {program!r}, which is neither a shell nor a program of a runtime "
            "dependency in pyproject.toml (the slim image has nothing else)"
        )

    @pytest.mark.parametrize(("where", "words"), IMAGE_COMMANDS, ids=IMAGE_COMMAND_IDS)
    def test_the_image_contains_what_commands_need(self, where: str, words: list[str]) -> None:
        copied = _copied()

        for path in _needed(words):
            assert any(path == c or path.startswith(f"{c}/") for c in copied), f"{where}: {path}"

    def test_the_image_runs_as_a_normal_user(self) -> None:
        users = [u.strip() for u in _instructions("USER")]

        assert users, "the runtime stage must set USER"
        assert users[-1] not in ("root", "0")

    def test_procfile_has_an_api(self) -> None:
        assert "api" in _procfile()
