"""Benchmark profiles: `full` (make bench, ~10-13 min on 2 cores) and `tiny` (smoke test)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Profile:
    name: str
    # data plane: plugin -> closed-loop concurrencies
    points: dict[str, tuple[int, ...]]
    open_loop: dict[str, float]  # plugin -> fixed request rate (req/s) of the open-loop run
    duration_s: float
    rounds: int
    warmup_s: float
    ray_variants: tuple[str, ...]  # Ray Serve baselines to run ("default", "tuned")
    plughost_ray: bool  # try system 4, plughost with PLUGHOST_BACKEND=ray
    alias_plugins: tuple[str, ...]  # plugins also measured through the alias route
    # control plane
    deploy_n: int
    ray_deploy_n: int
    plughost_ray_deploy_n: int
    redeploy_n: int
    bluegreen_n: int
    bluegreen_c: int
    status_deployments: int
    status_c: int
    status_duration_s: float
    queue_n: int
    profile_s: float  # py-spy window on plughost at c=32 (0 = skip)
    upload_workers: int = 4
    # micro-batching (bench/batching.py): seconds of load per leg and round, rounds, warm-up
    batching_s: float = 5.0
    batching_rounds: int = 3
    batching_warmup_s: float = 1.0
    notes: tuple[str, ...] = field(default=())


FULL = Profile(
    name="full",
    points={"hash16": (1, 8, 32, 64), "hash384": (1, 32), "minilm": (1, 32)},
    open_loop={"hash16": 150.0},
    duration_s=3.0,
    rounds=2,
    warmup_s=1.0,
    ray_variants=("default", "tuned"),
    plughost_ray=True,
    alias_plugins=("hash16", "hash384"),
    deploy_n=10,
    ray_deploy_n=5,
    plughost_ray_deploy_n=3,
    redeploy_n=10,
    bluegreen_n=10,
    bluegreen_c=16,
    status_deployments=20,
    status_c=32,
    status_duration_s=5.0,
    queue_n=100,
    profile_s=4.0,
)

TINY = Profile(
    name="tiny",
    points={"hash16": (1, 8)},
    open_loop={"hash16": 50.0},
    duration_s=1.0,
    rounds=1,
    warmup_s=0.0,
    ray_variants=("default",),
    plughost_ray=True,
    alias_plugins=("hash16",),
    deploy_n=2,
    ray_deploy_n=1,
    plughost_ray_deploy_n=1,
    redeploy_n=1,
    bluegreen_n=1,
    bluegreen_c=4,
    status_deployments=3,
    status_c=8,
    status_duration_s=1.0,
    queue_n=3,
    profile_s=1.0,
    batching_s=2.0,
    batching_rounds=1,
    batching_warmup_s=0.5,
    notes=("tiny profile: a smoke setting, not a measurement",),
)

PROFILES = {"full": FULL, "tiny": TINY}
