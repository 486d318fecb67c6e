"""The fields of :class:`plughost.config.Settings`, one class per area.

``Settings`` inherits them all; each field's ``description`` is its row in
docs/configuration.md (``python -m plughost.config_reference``). The classes are listed in
``Settings``' bases in reverse, so the fields keep this file's order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings


def model_map(text: str) -> dict[str, str]:
    """A JSON object of model names to model names; ValueError otherwise."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"PLUGHOST_LLM_MODEL_MAP is not JSON: {exc}") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("PLUGHOST_LLM_MODEL_MAP must be a JSON object of names to names")
    return value


class CoreFields(BaseSettings):
    """The server itself: where it keeps its data, how it listens, its archive store and intake, and how deployments and local replicas behave."""

    # -- server
    home: Path = Field(
        default=Path("./.plughost"),
        description="data folder: the SQLite database, archives, deployment folders, replica "
        "registry, logs and the admin key",
    )
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL, e.g. `postgresql+psycopg://postgres@127.0.0.1:5432/plughost`; "
        "empty: SQLite in the home (one server per SQLite database)",
    )
    bootstrap_key: str = Field(
        default="",
        description="the first API key; empty: a generated one, printed once and written to "
        "`$PLUGHOST_HOME/admin-key` (mode 0600)",
    )
    # repr=False: the key never shows in a printed Settings
    secrets_key: str = Field(
        default="",
        repr=False,
        description="the Fernet key (urlsafe base64, 32 bytes) that encrypts organization "
        "secrets at rest; several comma-separated: the first encrypts, all decrypt (key "
        "rotation); empty: generated once into `$PLUGHOST_HOME/secrets-key` (mode 0600) on "
        "SQLite, or into the database's server secrets on PostgreSQL (shared by its servers)",
    )
    public_url: str = Field(
        default="",
        description="base of presigned URLs; empty: the request's base URL (set it behind a proxy)",
    )
    peer_url: str = Field(
        default="",
        description="how the other servers on the same database reach this one (the leader's "
        "forwarded calls); empty: `http://host:port`, the machine's name when bound to "
        "`0.0.0.0`; leave it unset with `--workers`",
    )
    host: str = Field(
        default="127.0.0.1", description="address the server binds (`plughost serve --host`)"
    )
    port: int = Field(default=8080, description="port the server binds (`plughost serve --port`)")
    # more than 1 needs PostgreSQL: each worker is a whole server sharing the database
    workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="server processes sharing the port (`plughost serve --workers N`; "
        "PostgreSQL only)",
    )

    # -- archive store: plugin archives on S3 or an S3-compatible server
    storage_url: str = Field(
        default="",
        description="empty: archives in `$PLUGHOST_HOME/archives`; `s3://bucket/prefix`: on S3 "
        "(needs the `s3` extra; region and credentials from boto3's usual chain)",
    )
    s3_endpoint_url: str = Field(
        default="",
        description="an S3-compatible server (MinIO, moto), e.g. `http://127.0.0.1:9000` "
        "(path-style addressing); clients must reach it at this address too, presigned URLs "
        "name it; empty: AWS",
    )
    s3_connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="connect timeout of each S3 request (3 attempts with backoff)",
    )

    # -- intake
    max_archive_bytes: int = Field(
        default=524_288_000, description="largest plugin archive accepted, in bytes (500 MB)"
    )
    max_archive_entries: int = Field(
        default=1000, description="most entries a plugin archive may hold"
    )
    manifest_timeout_s: float = Field(
        default=20.0, description="time limit of the child process that reads manifest.py"
    )
    multipart_overhead_bytes: int = Field(
        default=1_048_576,
        description="room for the multipart framing above an upload's byte limit",
    )
    # each intake runs in a worker thread, so the event loop never waits on one
    intake_concurrency: int = Field(
        default=0,
        ge=0,
        description="uploads validated at once (unpack, scan, manifest read, off the event "
        "loop); the rest wait their turn; 0: the machine's cores",
    )
    # the test suite sets it for every server it starts
    loop_stall_ms: float = Field(
        default=0.0,
        ge=0,
        description="log `loop stall: N ms in file:line` with the stack when the event loop is "
        "held longer than this (time spent waiting for a CPU is not counted); 0: off",
    )

    # -- deployments and local replicas
    backend: str = Field(default="local", description="`local` (processes) or `ray` (Ray Serve)")
    max_concurrent_deployments: int = Field(
        default=4, description="rollouts running at once; the rest wait in order"
    )
    default_deploy_eta_s: int = Field(
        default=10, description="the ETA of a deploy before the plugin's name has a past rollout"
    )
    replica_start_timeout_s: float = Field(
        default=120.0, description="a replica not ready by then fails the deployment"
    )
    replica_call_timeout_s: float = Field(
        default=60.0,
        description="a call's deadline when serve_config sets no request_timeout_s; also how "
        "long a stopped call's thread may still run before its replica is replaced",
    )
    drain_timeout_s: float = Field(
        default=30.0, description="how long old replicas may finish their calls in flight"
    )
    reconcile_interval_s: float = Field(
        default=0.2, description="the controller's pass interval when nothing wakes it"
    )
    max_start_crashes: int = Field(
        default=3, description="replica crashes in a row after which a group gives up"
    )
    # the spare is sandboxed, the worker imported, the plugin not loaded (backends/local_spare.py)
    warm_spare: bool = Field(
        default=True,
        description="a local plugin scaled to zero keeps one pre-started replica process, so "
        "the waking call skips the interpreter start; false: a cold start starts a replica "
        "from nothing",
    )
    # torch for MiniLM is most of its cold start, and most of the spare's memory while it waits
    spare_preload: bool = Field(
        default=True,
        description="the warm spare, inside its sandbox, also imports the plugin's "
        "dependencies (as its last replica start reported them) and runs the requirement "
        "check: MiniLM wakes in about 0.5 s instead of about 11 s, and the spare holds about "
        "what a replica holds (478 MiB for MiniLM); false: it holds only the worker (about "
        "23 MiB)",
    )
    replica_pool: int = Field(default=2, ge=0, description="sandboxed replicas started before "
        "any deploy, which loads its plugin into one (fewer when memory is short); 0: none")
    port_keep_s: float = Field(
        default=60.0,
        ge=0,
        description="after a crash of the server its listening socket stays open this long "
        "(held by `plughost.server.port_keeper`; connections queue) for the next server on the same home "
        "and port; 0: a crash closes the port",
    )
    restore_hold_s: float = Field(
        default=30.0,
        ge=0,
        description="how long a call to a route being restored after a server start waits "
        "before a 503 with `Retry-After`",
    )
    # a crash always leaves them: they run in sessions of their own
    keep_replicas_on_stop: bool = Field(
        default=False,
        description="a deliberate stop (SIGTERM, Ctrl-C) leaves the local replicas running "
        "for the next server on the same home to adopt",
    )
    replica_orphan_timeout_s: float = Field(
        default=600.0,
        ge=0,
        description="a local replica with no server connected for this long ends itself; 0: "
        "never (the next server on the home adopts or stops it)",
    )


class RayFields(BaseSettings):
    """The Ray Serve backend (``PLUGHOST_BACKEND=ray``, the ``ray`` extra)."""

    # -- Ray Serve backend (PLUGHOST_BACKEND=ray, needs the `ray` extra)
    ray_address: str = Field(
        default="",
        description="empty: start a local Ray owned by the server (stopped with it); `auto`: "
        "the cluster `ray start` runs on this machine; `host:6379`: join that cluster; "
        "`ray://` (Ray Client) addresses are refused at start",
    )
    ray_num_cpus: int = Field(
        default=0, ge=0, description="CPUs of the owned local Ray (dashboard off); 0: all"
    )
    ray_object_store_mb: int = Field(
        default=256, ge=80, description="object store of the owned local Ray"
    )
    ray_replica_num_cpus: float = Field(
        default=0.1, ge=0, description="CPUs a replica reserves when serve_config has no num_cpus"
    )
    ray_pip: Literal["missing", "all", "off"] = Field(
        default="missing",
        description="`all`: also pip-install every manifest dependency into the replicas' "
        "runtime_env (nodes whose image differs from the server's); `missing` or `off`: none "
        "(what the server's environment lacks reaches the replicas in the plugin environment)",
    )
    ray_replica_pip: str = Field(
        default="",
        description="comma-separated pip packages added to every replica (e.g. `orjson` on "
        "nodes without it)",
    )
    ray_health_check_period_s: float = Field(
        default=5.0, gt=0, description="how often Serve calls a replica's `health()`"
    )


class EnvironmentFields(BaseSettings):
    """Plugin environments: manifest ``dependencies`` the base set lacks, installed with uv."""

    # -- plugin environments: manifest `dependencies` the base set lacks, installed with uv
    plugin_install: bool = Field(
        default=True,
        description="install the manifest dependencies the base set lacks; false: a missing "
        "one fails the release, naming it",
    )
    plugin_index_url: str = Field(
        default="", description="the index uv resolves and downloads from; empty: PyPI"
    )
    plugin_uv_cache_dir: str = Field(
        default="", description="uv's download cache; empty: `$PLUGHOST_HOME/uv-cache`"
    )
    plugin_build_sdists: bool = Field(
        default=False,
        description="the older name of `PLUGHOST_PLUGIN_ONLY_BINARY=false`: true lets uv build "
        "source distributions (inside bubblewrap, see that setting)",
    )
    plugin_build_timeout_s: float = Field(
        default=600.0, gt=0, description="limit of each uv step of an environment's build"
    )


class ContainerFields(BaseSettings):
    """What plugin code reaches through its ``container``: the LLM endpoint and the bounds of container calls."""

    # -- container calls of plugin code: container.llm and container.secrets
    llm_base_url: str = Field(
        default="",
        description="base URL of the OpenAI-compatible endpoint behind `container.llm` (its "
        "`/chat/completions` is called), e.g. `http://127.0.0.1:8000/v1` (vLLM), "
        "`http://127.0.0.1:11434/v1` (Ollama), `https://api.openai.com/v1`; empty: "
        "`container.llm` answers an error naming this setting",
    )
    # repr=False: the key never shows in a printed Settings
    llm_api_key: str = Field(
        default="",
        repr=False,
        description="bearer key of that endpoint; empty: the organization secret "
        "`llm_api_key` when it has one, else no key. Plugins never see it",
    )
    llm_model_map: str = Field(
        default="",
        description="JSON object mapping the model names plugins ask for (Mixpeek's, such as "
        '`gemini-2.5-flash`, or `provider/model`) to the endpoint\'s; `"*"` is the model for '
        "any other name and for calls naming none; unmapped names are sent as they are",
    )
    llm_timeout_s: float = Field(
        default=120.0, gt=0, description="limit of one request to the LLM endpoint"
    )
    container_call_timeout_s: float = Field(
        default=180.0,
        gt=0,
        description="limit of one container call of plugin code, waiting for a slot included",
    )
    container_max_concurrency: int = Field(
        default=16,
        ge=1,
        description="container calls one namespace's plugins may have in flight at once; "
        "more wait for a slot",
    )

    @field_validator("llm_model_map")
    @classmethod
    def _check_model_map(cls, value: str) -> str:
        model_map(value)
        return value


class SandboxFields(BaseSettings):
    """The sandbox of plugin code (SECURITY.md)."""

    # -- sandbox of plugin code (SECURITY.md)
    sandbox: Literal["off", "auto", "strict"] = Field(
        default="auto",
        description="`auto` (the layers the machine has), `strict` (refuse to start without "
        "every layer) or `off`",
    )
    sandbox_bwrap: str = Field(default="bwrap", description="the bubblewrap executable")
    sandbox_egress_namespaces: str = Field(
        default="", description="comma-separated namespaces whose replicas may use the network"
    )
    sandbox_memory_gb: float = Field(
        default=2.0,
        gt=0,
        description="memory limit of a replica whose serve_config names no memory_gb: resident "
        "memory in its cgroup, or its address space (RLIMIT_AS) where cgroups are not writable",
    )
    sandbox_max_open_files: int = Field(
        default=1024, gt=0, description="RLIMIT_NOFILE of a plugin process"
    )
    sandbox_max_processes: int = Field(default=256, gt=0, description="RLIMIT_NPROC per replica")
    sandbox_max_file_mb: int = Field(
        default=64, gt=0, description="RLIMIT_FSIZE: the largest file a plugin process writes"
    )
    sandbox_tmp_mb: int = Field(default=64, gt=0, description="size of the private /tmp")
    sandbox_uid_base: int = Field(
        default=1_900_000_000, gt=0, description="first of the unprivileged uids given to replicas"
    )
    sandbox_uid_count: int = Field(
        default=65_536, gt=0, description="how many uids from `sandbox_uid_base` may be used"
    )
    unsafe_skip_scan: bool = Field(
        default=False, description="TESTS ONLY: skip the upload scanner (the sandbox must hold)"
    )


class BatchFields(BaseSettings):
    """Batch jobs: a plugin's pipeline.py over a data set."""

    # -- batch jobs (a plugin's pipeline.py over a data set)
    batch_max_jobs: int = Field(
        default=2, gt=0, description="jobs running at once; the rest wait in order"
    )
    batch_max_workers: int = Field(
        default=0, ge=0, description="worker processes per job at most; 0: the machine's cores"
    )
    batch_max_input_bytes: int = Field(
        default=10 * 1024**3,
        gt=0,
        description="largest input accepted, upload or presigned PUT (10 GiB)",
    )
    batch_chunk_rows: int = Field(
        default=1024,
        gt=0,
        description="rows per chunk, the unit of work, commit and resume (rounded up to a "
        "multiple of the batch size)",
    )
    batch_worker_start_timeout_s: float = Field(
        default=120.0, gt=0, description="a batch worker not ready by then fails the job"
    )
    unsafe_batch_ray_in_process: bool = Field(
        default=False,
        description="BENCH ONLY: on Ray, run batch pipelines in Ray's actors, unsandboxed",
    )


class ObservationFields(BaseSettings):
    """Observation: /metrics access, the replicas' kept output, debugging nets."""

    # -- observation: /metrics access and the replicas' kept output
    metrics_public: bool = Field(
        default=False, description="`/metrics` answers without an API key (else an admin key)"
    )
    logs_release_cap_mb: float = Field(
        default=8.0, gt=0, description="replica output kept per release"
    )
    logs_total_cap_mb: float = Field(
        default=1024.0,
        gt=0,
        description="replica output kept in all (the oldest releases' logs are deleted first)",
    )
    logs_rate_kb_s: float = Field(
        default=1024.0,
        gt=0,
        description="a release's output beyond this rate (after a 4x burst) is dropped and counted",
    )
    # a debugging aid (plughost.server.fdcheck); the test suite sets it for every server it starts
    fd_check: bool = Field(
        default=False,
        description="log every `close` that fails with `EBADF`, and every file or socket the "
        "garbage collector closes, with the stack",
    )
