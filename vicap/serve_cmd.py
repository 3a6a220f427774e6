"""``vicap serve``: the model service as a real ``bentoml serve`` process of
``vicap.service:VICap``, with the model, policy and data root of the settings (or the options,
passed on as ``VICAP_*`` variables), bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from vicap.settings import Settings, get_settings

SERVICE_TARGET = "vicap.service:VICap"
READY_TIMEOUT_S = 90.0


def serve_environment(
    settings: Settings, model: str | None = None, policy: str | None = None, data_dir: Path | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env["VICAP_SERVE_MODEL"] = model or settings.serve_model
    env["VICAP_SERVE_POLICY"] = (settings.serve_policy or "") if policy is None else policy
    env["VICAP_DATA_DIR"] = str(data_dir or settings.data_dir)
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    return env


def serve_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "bentoml", "serve", SERVICE_TARGET, "--host", host, "--port", str(port)]


def missing_model(tag: str) -> str | None:
    """Why ``tag`` cannot be served, or None."""
    import bentoml

    try:
        bentoml.models.get(tag if ":" in tag else f"{tag}:latest")
    except bentoml.exceptions.NotFound:
        return f"no registered model {tag!r} (train one with `vicap train`; `vicap models list` lists them)"
    return None


class ServiceProcess:
    """A ``bentoml serve`` of the service in a child process, ready when ``/readyz`` answers."""

    def __init__(
        self, env: dict[str, str], host: str = "127.0.0.1", port: int = 3000, log: Path | None = None
    ):
        self.url = f"http://{host}:{port}"
        self.log = log
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 (closed in stop)
        self._out = out
        self.process = subprocess.Popen(
            serve_command(host, port), env=env, stdout=out, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}; its log: {self.log}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"the service was not ready in {timeout_s:.0f} s; its log: {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._out is not subprocess.DEVNULL:
            self._out.close()

    def __enter__(self) -> ServiceProcess:
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_serve(
    model: str | None, policy: str | None, host: str | None, port: int | None, data_dir: Path | None
) -> int:
    """Replace this process with ``bentoml serve`` (its logs, its Ctrl-C)."""
    settings = get_settings()
    env = serve_environment(settings, model, policy, data_dir)
    why = missing_model(env["VICAP_SERVE_MODEL"])
    if why:
        print(why, file=sys.stderr)
        return 2
    feast = Path(env["VICAP_DATA_DIR"]) / "feast" / "registry.db"
    if not feast.exists():
        print(
            f"{feast}: no Feast registry (run `vicap features apply` and materialize first)", file=sys.stderr
        )
        return 2
    command = serve_command(host or settings.serve_host, port or settings.serve_port)
    os.execve(command[0], command, env)
    return 0  # not reached
