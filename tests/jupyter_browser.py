"""Real-browser helpers: a JupyterLab server on loopback and headless Debian Chromium driven by Playwright.

Facts this relies on (measured on the project's test machines): Playwright cannot download browsers there, so
it drives Debian's ``/usr/bin/chromium`` (``SIMVIS_CHROMIUM`` overrides the path); JupyterLab as root needs
``--allow-root``; ``expose_app_in_browser`` gives ``window.jupyterapp``; a fresh server, config and runtime dir
per test session; ``?reset`` stops JupyterLab reopening old tabs.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("SIMVIS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def one_cell_notebook(source: str) -> dict[str, Any]:
    """An nbformat 4 notebook (as JSON data) whose one code cell is ``source``, for a test to write and open."""
    return {
        "cells": [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": source}],
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class JupyterServer:
    url: str
    token: str
    root: Path
    log: Path

    def lab(self, notebook: str) -> str:
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def classic(self, notebook: str) -> str:
        return f"{self.url}/notebooks/{notebook}?token={self.token}"


def _jupyter_env(workdir: Path) -> dict[str, str]:
    """The environment of a server started for a test: its own config, runtime and IPython dirs, offline."""
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        d = workdir / name.lower()
        d.mkdir(parents=True, exist_ok=True)
        env[name] = str(d)
    env["SIMVIS_OFFLINE"] = "1"
    return env


@contextlib.contextmanager
def _serve(name: str, cmd: list[str], env: dict[str, str], cwd: Path, probe: str, log: Path) -> Iterator[None]:
    """Start ``cmd`` (output to ``log``), wait until ``probe`` answers (90 s at most), stop it on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(probe, timeout=2) as r:
                    r.read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not answer in 90 s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def jupyter_server(root: Path, workdir: Path) -> Iterator[JupyterServer]:
    """JupyterLab (which also serves Notebook 7's /notebooks pages) on 127.0.0.1, stopped on exit."""
    port, token = free_port(), secrets.token_hex(16)
    env = _jupyter_env(workdir)
    # JupyterLab settings: render every cell (no windowing, so widgets below the fold exist), no news popup.
    settings = workdir / "lab-settings"
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
    }.items():
        target = settings / plugin
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(settings)
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(workdir / "lab-workspaces")
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--allow-root",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True",
        "--JupyterNotebookApp.expose_app_in_browser=True",
        "--ServerApp.disable_check_xsrf=True",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    url = f"http://127.0.0.1:{port}"
    log = workdir / "jupyter.log"
    with _serve("jupyter lab", cmd, env, root, f"{url}/api/status?token={token}", log):
        yield JupyterServer(url, token, root, log)


@contextlib.contextmanager
def voila_server(notebook: Path, workdir: Path) -> Iterator[str]:
    """Voilà serving ``notebook`` (a dashboard: outputs only, its own kernel) on 127.0.0.1; yields the page's URL.
    Stopped on exit. The server answers before it runs the notebook: Voilà executes it when the page is opened."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        "--no-browser",
        f"--port={port}",
        "--Voila.ip=127.0.0.1",
        "--show_tracebacks=True",
    ]
    url = f"http://127.0.0.1:{port}/"
    with _serve(
        "voila", cmd, _jupyter_env(workdir), notebook.parent, f"{url}voila/static/voila.js", workdir / "voila.log"
    ):
        yield url


@contextlib.contextmanager
def chromium(workdir: Path, viewport: tuple[int, int] = (1400, 1000), test_hooks: bool = True) -> Iterator[Any]:
    """A Playwright page in headless Debian Chromium with a fresh profile. With ``test_hooks`` an init script sets
    ``__SIMVIS_TEST_HOOKS__`` before any page script runs, so each widget puts its view on its root element as
    ``root.__simvis`` (the widgets do not otherwise: ``js/lib/hooks.js``); pages opened later by
    ``page.context.new_page()`` run without it."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install -y chromium (make test does this)")
    profile = workdir / "chromium-profile"
    shutil.rmtree(profile, ignore_errors=True)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            if test_hooks:
                page.add_init_script("globalThis.__SIMVIS_TEST_HOOKS__ = true;")
            page.errors = []  # type: ignore[attr-defined]
            page.on("pageerror", lambda e: page.errors.append(str(e)))  # type: ignore[attr-defined]
            yield page
        finally:
            context.close()


RUN_ALL = """async () => {
  const app = window.jupyterapp;
  const widget = app.shell.currentWidget;
  await widget.context.ready;
  await widget.sessionContext.ready;
  await app.commands.execute('notebook:run-all-cells');
}"""

KERNEL_EXEC = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let text = '';
  future.onIOPub = (msg) => {
    if (msg.header.msg_type === 'stream') text += msg.content.text;
    if (msg.header.msg_type === 'error') text += 'ERROR ' + msg.content.ename + ': ' + msg.content.evalue;
  };
  await future.done;
  return text;
}"""


def open_and_run(page: Any, url: str, timeout_s: float = 180) -> None:
    """Open a notebook page, wait for the app and its kernel, run all cells."""
    page.goto(url)
    page.wait_for_function(
        "() => window.jupyterapp && window.jupyterapp.shell.currentWidget && window.jupyterapp.shell.currentWidget.sessionContext",
        timeout=timeout_s * 1000,
    )
    page.evaluate(RUN_ALL)


def kernel_exec(page: Any, code: str) -> str:
    """Run ``code`` in the notebook's kernel and return what it printed."""
    return str(page.evaluate(KERNEL_EXEC, code))


def open_widget(page: Any, url: str | None, selector: str, timeout_s: float = 180) -> Any:
    """Open a notebook and run it (unless ``url`` is None: already done), wait until the widget matching
    ``selector`` is ready; return its locator, scrolled into view."""
    if url is not None:
        open_and_run(page, url, timeout_s)
    page.wait_for_selector(selector, timeout=timeout_s * 1000)
    widget = page.locator(selector).first
    widget.scroll_into_view_if_needed()
    return widget
