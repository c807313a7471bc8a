"""docker-compose.yml and the Dockerfile agree with what the code reads (no Docker engine needed):
services, ports, TAFLOW_* variables, the namespace and search attributes, commands and health checks."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from taflow.cli import app as cli
from taflow.domain.search_attributes import ALL_SEARCH_ATTRIBUTES, dev_server_flags
from taflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
INTERPOLATION = re.compile(r"\$\{([A-Z0-9_]+)(?::?-([^}]*))?\}")
SERVICES = {"postgresql", "temporal", "temporal-admin-tools", "temporal-ui", "migrate", "api", "worker"}
LONG_RUNNING = {"postgresql", "temporal", "api", "worker"}
ONE_SHOT = {"temporal-admin-tools", "migrate"}


def interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` with nothing set in the environment: the defaults."""
    if isinstance(value, str):
        return INTERPOLATION.sub(lambda m: m.group(2) or "", value).replace("$$", "$")
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    resolved: dict[str, Any] = interpolate(loaded)
    return resolved


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc: dict[str, dict[str, Any]] = compose["services"]
    return svc


def env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in (service.get("environment") or {}).items()}


def settings_of(service: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The Settings the process in this container reads (its environment, no .env file)."""
    for key in list(Settings.model_fields):
        monkeypatch.delenv(f"TAFLOW_{key.upper()}", raising=False)
    for key, value in {**dockerfile_env(), **env(service)}.items():
        if key.startswith("TAFLOW_"):
            monkeypatch.setenv(key, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = text.split("\nFROM ")[-1]
    out: dict[str, str] = {}
    for line in final_stage.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                out[key] = value
    return out


def published(service: dict[str, Any]) -> list[tuple[str | None, int, int]]:
    """(host ip, host port, container port) of each `ports:` entry."""
    out = []
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        host_ip = parts[0] if len(parts) == 3 else None
        out.append((host_ip, int(parts[-2]), int(parts[-1])))
    return out


def health_url(service: dict[str, Any]) -> str:
    test = " ".join(service["healthcheck"]["test"])
    found = re.search(r"https?://[^'\" ]+", test)
    assert found, test
    return found.group(0)


def cli_commands() -> set[str]:
    commands: dict[str, Any] = getattr(typer.main.get_command(cli), "commands", {})
    return set(commands)


def test_every_service_of_the_topology_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == SERVICES
    for name in LONG_RUNNING:
        assert services[name]["healthcheck"]["test"], name
        assert services[name]["restart"] == "unless-stopped", name
    for name in ONE_SHOT:
        assert services[name]["restart"] == "no", name
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-admin-tools"]["image"].startswith("temporalio/admin-tools:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_every_taflow_variable_is_a_setting(services: dict[str, dict[str, Any]]) -> None:
    fields = {f"TAFLOW_{name.upper()}" for name in Settings.model_fields}
    used = {k for svc in services.values() for k in env(svc) if k.startswith("TAFLOW_")}
    used |= {k for k in dockerfile_env() if k.startswith("TAFLOW_")}
    assert used, "no TAFLOW_* variable at all?"
    assert used <= fields, f"not settings: {sorted(used - fields)}"
    for name in ("api", "worker", "migrate"):
        assert env(services[name]).keys() & fields, name


def test_the_api(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    api = services["api"]
    s = settings_of(api, monkeypatch)
    assert api["build"] == "." and api["command"] == ["api"] and "api" in cli_commands()
    assert s.api_host == "0.0.0.0"
    assert [(port, inside) for _, port, inside in published(api)] == [(s.api_port, s.api_port)]
    url = urlparse(health_url(api))
    assert url.port == s.api_port and url.path == "/healthz"
    from taflow.api.app import create_app
    from taflow.observability.api import router

    assert "/healthz" in create_app(s).openapi()["paths"]
    assert "/metrics" in {getattr(r, "path", None) for r in router.routes}


def test_the_worker_scales(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    worker = services["worker"]
    s = settings_of(worker, monkeypatch)
    assert worker["command"] == ["worker"] and "worker" in cli_commands()
    assert not worker.get("ports") and "container_name" not in worker  # `--scale worker=3` conflicts
    assert [int(p) for p in worker["expose"]] == [s.worker_metrics_port]
    assert s.worker_metrics_host == "0.0.0.0" and s.worker_metrics_port > 0
    url = urlparse(health_url(worker))
    assert url.port == s.worker_metrics_port and url.path == "/metrics"
    assert worker["stop_signal"] == "SIGINT"  # the worker drains on Ctrl-C (KeyboardInterrupt)
    for name in services:
        assert "container_name" not in services[name], name


def test_api_worker_and_migrations_share_one_configuration(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = ("database_url", "temporal_address", "temporal_namespace", "task_queue")
    api, worker, migrate = (settings_of(services[n], monkeypatch) for n in ("api", "worker", "migrate"))
    for field in shared:
        assert getattr(api, field) == getattr(worker, field) == getattr(migrate, field), field
    entry = " ".join(services["migrate"]["entrypoint"])
    assert "taflow migrate" in entry and "taflow seed" in entry
    assert {"migrate", "seed"} <= cli_commands()
    for name in ("api", "worker"):
        needs = services[name]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["temporal-admin-tools"]["condition"] == "service_completed_successfully"


def test_the_database(services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    pg = env(services["postgresql"])
    url = make_url(settings_of(services["api"], monkeypatch).database_url or "")
    assert url.drivername == "postgresql+asyncpg"
    assert url.host == "postgresql" and url.port == 5432
    assert (url.username, url.password, url.database) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    assert pg["POSTGRES_USER"] in " ".join(services["postgresql"]["healthcheck"]["test"])
    temporal = env(services["temporal"])
    assert temporal["DB"] == "postgres12" and temporal["POSTGRES_SEEDS"] == "postgresql"
    assert (temporal["POSTGRES_USER"], temporal["POSTGRES_PWD"]) == (url.username, url.password)
    assert temporal["DBNAME"] != url.database and temporal["VISIBILITY_DBNAME"] != url.database
    assert services["temporal"]["depends_on"]["postgresql"]["condition"] == "service_healthy"


def test_temporal_namespace_search_attributes_and_ui(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings_of(services["worker"], monkeypatch)
    host, _, port = (s.temporal_address or "").partition(":")
    assert host == "temporal" and int(port) == s.temporal_port
    temporal = services["temporal"]
    assert [(p, inside) for _, p, inside in published(temporal)] == [(s.temporal_port, s.temporal_port)]
    assert f"{host}:{port}" in temporal["healthcheck"]["test"]

    admin = services["temporal-admin-tools"]
    admin_env = env(admin)
    assert admin_env["TEMPORAL_ADDRESS"] == s.temporal_address
    assert admin_env["NAMESPACE"] == s.temporal_namespace
    assert admin["depends_on"]["temporal"]["condition"] == "service_healthy"
    wanted = {flag for flag in dev_server_flags() if flag != "--search-attribute"}
    assert set(admin_env["SEARCH_ATTRIBUTES"].split()) == wanted
    assert len(wanted) == len(ALL_SEARCH_ATTRIBUTES)
    script = admin["command"][0]
    assert "namespace create" in script and "search-attribute create" in script

    ui = services["temporal-ui"]
    assert env(ui)["TEMPORAL_ADDRESS"] == s.temporal_address
    assert env(ui)["TEMPORAL_DEFAULT_NAMESPACE"] == s.temporal_namespace
    ((ip, host_port, inside),) = published(ui)
    assert host_port == s.temporal_ui_port and inside == int(env(ui)["TEMPORAL_UI_PORT"])
    assert ip == "127.0.0.1"  # no authentication of its own


def test_the_image(services: dict[str, dict[str, Any]]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["taflow"]' in text and 'CMD ["api"]' in text
    exposed = {int(p) for line in text.splitlines() if line.startswith("EXPOSE") for p in line.split()[1:]}
    defaults = dockerfile_env()
    assert {int(defaults["TAFLOW_API_PORT"]), int(defaults["TAFLOW_WORKER_METRICS_PORT"])} == exposed
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".data", ".git", "tests"} <= set(ignored)
    assert services["api"]["image"] == services["worker"]["image"] == services["migrate"]["image"]
