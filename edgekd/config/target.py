"""Target profiles: what edgekd knows about one kind of edge board.

Input: a YAML file ``<name>.yaml`` (schema :class:`TargetProfile`), found by name in, first,
``$EDGEKD_CONFIG_DIR/targets/`` (user profiles, default ``~/.config/edgekd/targets/``) and then the
profiles shipped with edgekd (the repository's ``targets/``, package data in a wheel); or given as a path.
A user profile with the name of a shipped one replaces it. Output: a validated :class:`TargetProfile`.

A profile carries the TVM target (as the dict TVM 0.27 requires), the architecture and glibc floor the
binaries must respect, the cross toolchain (by registry name, see :mod:`edgekd.compile.toolchains`), where
the board's TVM runtime libraries come from, default threads and CPU affinity, power sensors, optional
roofline priors (informative: nothing decides on them), and plain-language notes on the board's limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from edgekd.config.loading import ConfigEntry, load_yaml, resolve_named, scan_named, validate
from edgekd.errors import ConfigError
from edgekd.paths import config_dir, shipped_dir

__all__ = [
    "TargetProfile", "TvmTarget", "RuntimeSource", "ThreadDefaults", "PowerSensor", "Roofline",
    "load_target", "list_targets", "scan_targets", "target_search_dirs",
]

TOOLCHAINS = ("zig-aarch64", "host-cc", "android-ndk")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TvmTarget(_Strict):
    """The TVM target as a dict. ``mcpu: host`` means "the CPU of the machine that compiles"."""

    kind: Literal["llvm"] = "llvm"
    mtriple: str = Field(pattern=r"^[a-z0-9_]+(-[a-z0-9_.]+){1,3}$")
    mcpu: str = Field(min_length=1)
    mattr: list[str] = Field(default_factory=list)
    num_cores: int | None = Field(default=None, alias="num-cores", ge=1)

    def as_tvm_dict(self, host_cpu: str | None = None) -> dict[str, Any]:
        """The dict for ``tvm.target.Target``; ``host_cpu`` replaces ``mcpu: host``."""
        mcpu = host_cpu if self.mcpu == "host" and host_cpu else self.mcpu
        target: dict[str, Any] = {"kind": self.kind, "mtriple": self.mtriple, "mcpu": mcpu}
        if self.mattr:
            target["mattr"] = list(self.mattr)
        if self.num_cores:
            target["num-cores"] = self.num_cores
        return target


class RuntimeSource(_Strict):
    """Where the board's ``libtvm_runtime.so`` / ``libtvm_ffi.so`` come from.

    - ``wheel``: the ``apache-tvm`` / ``apache-tvm-ffi`` wheels for ``platform`` (a pip platform tag),
      at exactly the host's versions, downloaded once and cached.
    - ``installed``: the libraries of the wheels installed on this machine (host target).
    - ``user``: a directory named by the environment variable ``env`` (no wheel exists, e.g. Android).
    """

    source: Literal["wheel", "installed", "user"]
    platform: str | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _source_fields(self) -> RuntimeSource:
        if self.source == "wheel" and not self.platform:
            raise ValueError("source 'wheel' needs 'platform' (a pip platform tag, e.g. manylinux_2_28_aarch64)")
        if self.source == "user" and not self.env:
            raise ValueError("source 'user' needs 'env' (the variable naming the runtime directory)")
        return self


class ThreadDefaults(_Strict):
    """Default thread count and CPU affinity for benchmarks (affinity: logical CPU ids, e.g. big cores)."""

    default: int = Field(ge=1)
    affinity: list[int] | None = None

    @field_validator("affinity")
    @classmethod
    def _non_empty(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and (not value or min(value) < 0 or len(set(value)) != len(value)):
            raise ValueError("affinity must be a non-empty list of distinct CPU ids >= 0")
        return value


class PowerSensor(_Strict):
    """One power-related reading on the board: a sysfs file, or a command whose output is parsed."""

    rail: str
    kind: Literal["sysfs", "command"]
    quantity: Literal["power", "current", "voltage", "energy"]
    unit: Literal["W", "mW", "uW", "A", "mA", "uA", "V", "mV", "uV", "uJ"]
    path: str | None = None
    command: str | None = None
    description: str = ""

    @model_validator(mode="after")
    def _where(self) -> PowerSensor:
        if self.kind == "sysfs" and not self.path:
            raise ValueError("a sysfs sensor needs 'path'")
        if self.kind == "command" and not self.command:
            raise ValueError("a command sensor needs 'command'")
        return self


class Roofline(_Strict):
    """Optional roofline priors (CPU, fp32, all default threads); informative, no decision reads them."""

    peak_gflops: float = Field(gt=0)
    memory_gbps: float = Field(gt=0)


class TargetProfile(_Strict):
    """One validated target profile (see module docstring)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    description: str = Field(min_length=1)
    arch: Literal["aarch64", "x86_64"]
    glibc_floor: str | None = Field(default=None, pattern=r"^2\.\d+$")
    tvm_target: TvmTarget
    toolchain: Literal["zig-aarch64", "host-cc", "android-ndk"]
    runtime: RuntimeSource
    threads: ThreadDefaults
    power_sensors: list[PowerSensor] = Field(default_factory=list)
    roofline: Roofline | None = None
    # channel counts this CPU's kernels like (optional): the grid of latency profiles and of pruned widths
    channel_multiple: int | None = Field(default=None, ge=1)
    notes: list[str] = Field(default_factory=list)
    _source: str | None = PrivateAttr(default=None)

    @property
    def source(self) -> str | None:
        """The YAML file this profile was loaded from (None when built in code)."""
        return self._source

    @model_validator(mode="after")
    def _consistent(self) -> TargetProfile:
        triple_arch = self.tvm_target.mtriple.split("-")[0]
        if triple_arch != self.arch:
            raise ValueError(f"tvm_target.mtriple {self.tvm_target.mtriple!r} does not match arch {self.arch!r}")
        if self.toolchain == "zig-aarch64" and (self.arch != "aarch64" or not self.glibc_floor):
            raise ValueError("toolchain zig-aarch64 needs arch aarch64 and a glibc_floor")
        return self

    @property
    def is_host(self) -> bool:
        """True when binaries for this target run on the compiling machine itself."""
        return self.toolchain == "host-cc"

    def glibc_floor_tuple(self) -> tuple[int, int] | None:
        if self.glibc_floor is None:
            return None
        major, minor = self.glibc_floor.split(".")
        return int(major), int(minor)


def target_search_dirs() -> list[Path]:
    """Where bare target names are looked up, in order: user directory first, then the shipped ones."""
    return [config_dir() / "targets", shipped_dir("targets")]


def load_target(name_or_path: str | Path) -> TargetProfile:
    """Load and validate a target profile by name (see :func:`target_search_dirs`) or by YAML path.

    Raises:
        ConfigError: unknown name (the message lists the available ones) or an invalid field.
    """
    if isinstance(name_or_path, TargetProfile):
        return name_or_path
    path = resolve_named(str(name_or_path), target_search_dirs(), "target")
    profile = validate(TargetProfile, load_yaml(path), str(path))
    if path.stem != profile.name:
        raise ConfigError(f"{path}: name={profile.name!r}: must equal the file name {path.stem!r}")
    profile._source = str(path)
    return profile


def scan_targets() -> list[ConfigEntry[TargetProfile]]:
    """Every profile file by name, loaded; an invalid one is an entry with its one-line error instead.

    A user profile hides a shipped one of the same name (even when it is invalid: that is what
    :func:`load_target` would use).
    """
    return scan_named(target_search_dirs(), load_target)


def list_targets() -> list[TargetProfile]:
    """Every valid profile, by name (see :func:`scan_targets`, which also reports the invalid ones)."""
    return [entry.value for entry in scan_targets() if entry.value is not None]
