"""Plugin environments: manifest dependencies the base set lacks, installed per requirement
set with uv and layered over the server's own environment (see :mod:`.builder`)."""

from plughost.envs.builder import EnvBuilder, EnvBuildFailed, EnvPlan
from plughost.envs.keying import BadRequirement
from plughost.envs.stage import PluginEnvironments

__all__ = ["BadRequirement", "EnvBuildFailed", "EnvBuilder", "EnvPlan", "PluginEnvironments"]
