"""Every call plughost makes into Ray beyond its public API, in one place.

Ray offers no public way to do these, and a minor Ray release may rename or reshape any of
them without notice; :func:`missing` lists what the installed Ray no longer offers, and a
unit test (tests/unit/backends/ray/test_ray_private.py) fails with that list, so such a release
is caught before a deploy is.

- Packages (``gcs://_ray_pkg_<hash>.zip``): hash a folder, upload it once, keep it pinned,
  read it back on a node. A runtime_env does this only as a side effect of starting an actor
  in the package's folder, which is what plughost avoids (a runtime_env per release makes
  Ray start and set up a new worker process for every replica).
- Serve applications: deploy and delete without waiting. The public ``serve.run`` and
  ``serve.delete`` block until the application runs or is gone; the backend waits itself,
  reading Serve's status, so several releases start and stop at once. One application's
  status alone (the controller client's ``get_serve_status``): ``serve.status()`` builds
  the details of every application, ~15 ms of CPU per read.

Ray is imported inside each function: plughost imports without the ``ray`` extra.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "app_status",
    "delete_app",
    "missing",
    "package_uri",
    "pin_package",
    "read_package",
    "run_app",
    "upload_package",
]


def package_uri(directory: str, excludes: list[str]) -> str:
    """The ``gcs://`` URI of a folder's package, named after a hash of its content."""
    from ray._private.runtime_env.packaging import get_uri_for_directory

    return str(get_uri_for_directory(directory, include_gitignore=False, excludes=excludes))


def upload_package(
    uri: str,
    scratch: str,
    directory: str,
    parent: bool,
    excludes: list[str],
    logger: logging.Logger,
) -> None:
    """Zip ``directory`` (in ``scratch``) and upload it as ``uri`` unless the cluster has it.
    ``parent``: keep the folder itself in the package (a py_module)."""
    from ray._private.runtime_env.packaging import upload_package_if_needed

    upload_package_if_needed(
        uri,
        scratch,
        directory,
        include_gitignore=False,
        include_parent_dir=parent,
        excludes=excludes,
        logger=logger,
    )


def pin_package(uri: str, expiration_s: int) -> None:
    """Keep a package in the cluster for ``expiration_s`` more seconds."""
    from ray._private.runtime_env.packaging import pin_runtime_env_uri

    pin_runtime_env_uri(uri, expiration_s=expiration_s)


def read_package(uri: str) -> bytes | None:
    """A package's zip bytes as uploaded, None when the cluster no longer has it."""
    from ray.experimental.internal_kv import _internal_kv_get

    data: bytes | None = _internal_kv_get(uri)
    return data


def run_app(app: Any, name: str, logging_config: Any) -> None:
    """Create or replace Serve application ``name`` from a bound deployment; no wait."""
    from ray import serve

    if hasattr(serve, "run_many"):
        target = serve.RunTarget(
            target=app, name=name, route_prefix=None, logging_config=logging_config
        )
        # nor for Serve to create the deployment: it polls for that every 0.1 s, i.e. adds
        # 0.1 s to every deploy; the backend reads the application's status itself
        no_wait = {
            k: False
            for k in ("wait_for_applications_running", "wait_for_ingress_deployment_creation")
            if k in inspect.signature(serve.run_many).parameters
        }
        serve.run_many([target], **no_wait)
    else:  # Ray releases before run_many
        serve._run(app, _blocking=False, name=name, route_prefix=None)


def app_status(name: str) -> Any:
    """Serve's status of application ``name`` alone (an ApplicationStatus): the controller's
    status overview of one application, without the details ``serve.status()`` builds."""
    from ray.serve.context import _get_global_client

    return _get_global_client().get_serve_status(name).app_status.status


def delete_app(name: str) -> None:
    """Ask Serve to delete application ``name``; no wait."""
    from ray import serve

    serve.delete(name, _blocking=False)


def _wanted() -> list[tuple[str, Callable[[], Any], tuple[str, ...]]]:
    """(what, how to find it, the parameters plughost passes it)."""
    from ray import serve
    from ray._private.runtime_env import packaging
    from ray.experimental import internal_kv

    runner = (
        ("serve.run_many", lambda: serve.run_many, ("wait_for_applications_running",))
        if hasattr(serve, "run_many")
        else ("serve._run", lambda: serve._run, ("_blocking", "name", "route_prefix"))
    )
    return [
        (
            "packaging.get_uri_for_directory",
            lambda: packaging.get_uri_for_directory,
            ("include_gitignore", "excludes"),
        ),
        (
            "packaging.upload_package_if_needed",
            lambda: packaging.upload_package_if_needed,
            ("include_gitignore", "include_parent_dir", "excludes", "logger"),
        ),
        ("packaging.pin_runtime_env_uri", lambda: packaging.pin_runtime_env_uri, ("expiration_s",)),
        ("internal_kv._internal_kv_get", lambda: internal_kv._internal_kv_get, ()),
        runner,
        ("serve.delete", lambda: serve.delete, ("_blocking",)),
        (
            "ServeControllerClient.get_serve_status",
            lambda: _client_class().get_serve_status,
            ("name",),
        ),
    ]


def _client_class() -> Any:
    from ray.serve._private.client import ServeControllerClient

    return ServeControllerClient


def missing() -> list[str]:
    """What the installed Ray no longer offers of the calls above (empty: all is there).
    Raises ImportError when Ray itself is not installed."""
    problems: list[str] = []
    for what, find, parameters in _wanted():
        try:
            function = find()
        except AttributeError:
            problems.append(f"{what} is gone")
            continue
        accepted = inspect.signature(function).parameters
        problems += [f"{what} takes no {p!r}" for p in parameters if p not in accepted]
    return problems
