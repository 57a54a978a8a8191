"""Compilation targets: what users type for ``--target``, and TVM 0.27's dictionary form of it.

Users type TVM's familiar command-line form, either quoted (``"llvm -mcpu=skylake-avx512"``) or split
into argv tokens (``["llvm", "-mcpu=cortex-a72"]``). TVM 0.27 rejects that form ("CLI target string
form is no longer supported"), so ``parse_target`` translates it into a ``TargetSpec`` whose
``to_tvm_dict()`` is what ``tvm.target.Target`` accepts.

Rules:
- The first token is a kind (``llvm``, ``c``, ``cuda``) or a named preset (see ``PRESETS``); the rest
  are ``-name=value`` flags. Flags after a preset override the preset's values.
- Each kind accepts the flags in ``FLAGS`` (a subset of TVM's options for that kind, same names and
  types). An unknown kind, an unknown flag, a flag given twice or a malformed value is a
  ``UsageError`` that lists what is accepted.
- Value types: ``str``; ``int``; ``bool`` (bare ``-fast-math``, or ``=true``/``=false``/``=1``/``=0``);
  list (comma separated: ``-mattr=+neon,+dotprod``; every ``mattr`` entry starts with ``+`` or ``-``).
- ``-mcpu=cortex-a*`` or ``-mcpu=neoverse*`` without ``-mtriple`` implies ``-mtriple=aarch64-linux-gnu``;
  the 32-bit-only Cortex-A cores (a5, a7, a8, a9, a12, a15, a17, a32) imply ``armv7l-linux-gnueabihf``.
- ``TargetSpec.text`` is canonical: kind, then flags in ``FLAGS`` order, presets expanded. Parsing it
  gives an equal ``TargetSpec``.
- A target is the host when it is ``c``, or ``llvm`` with no ``-mtriple`` or one whose architecture
  and operating system are the host's. ``llvm`` for anything else is a cross target. ``cuda`` is
  neither.

This module does not import TVM: parsing must be quick and work without the ``tvm`` extra.
"""

from __future__ import annotations

import dataclasses
import platform
import re
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Union

from ir.errors import UsageError

OptionValue = Union[str, int, bool, tuple[str, ...]]


@dataclasses.dataclass(frozen=True)
class Flag:
    """One accepted ``-name=value`` flag: its TVM option name, value type and a value placeholder."""

    name: str
    type: type  # str, int, bool or tuple (a comma-separated list of str)
    placeholder: str


FLAGS: Mapping[str, tuple[Flag, ...]] = types.MappingProxyType(
    {
        "llvm": (
            Flag("mtriple", str, "TRIPLE"),
            Flag("mcpu", str, "CPU"),
            Flag("mattr", tuple, "+FEATURE,..."),
            Flag("mabi", str, "ABI"),
            Flag("mfloat-abi", str, "hard|soft"),
            Flag("num-cores", int, "N"),
            Flag("opt-level", int, "0..3"),
            Flag("vector-width", int, "BITS"),
            Flag("fast-math", bool, "true|false"),
            Flag("libs", tuple, "LIB,..."),
        ),
        "c": (
            Flag("mcpu", str, "CPU"),
            Flag("march", str, "ARCH"),
        ),
        "cuda": (
            Flag("arch", str, "sm_NN"),
            Flag("max_threads_per_block", int, "N"),
            Flag("max_shared_memory_per_block", int, "BYTES"),
            Flag("max_num_threads", int, "N"),
            Flag("thread_warp_size", int, "N"),
            Flag("registers_per_block", int, "N"),
            Flag("l2_cache_size_bytes", int, "BYTES"),
            Flag("libs", tuple, "LIB,..."),
        ),
        # The int8 GEMM accelerator (backends.accel.config): MAC array, clock, buffers in KiB, bus bytes.
        "accel": (
            Flag("block", str, "INxOUT"),
            Flag("clock", int, "MHZ"),
            Flag("inp-buf", int, "KIB"),
            Flag("wgt-buf", int, "KIB"),
            Flag("acc-buf", int, "KIB"),
            Flag("bus", int, "BYTES"),
            Flag("depthwise", bool, "true|false"),
        ),
    }
)

# Kinds graphpress builds without a TVM target of that kind (the accelerator's host part is plain llvm).
NON_TVM_KINDS = frozenset({"accel"})

# Named presets: name -> canonical CLI text. Aliases map to the same text.
PRESETS: Mapping[str, str] = types.MappingProxyType(
    {
        "llvm": "llvm",
        "c": "c",
        "x86-avx2": "llvm -mtriple=x86_64-linux-gnu -mcpu=haswell",
        "x86-avx512": "llvm -mtriple=x86_64-linux-gnu -mcpu=skylake-avx512",
        "x86-vnni": "llvm -mtriple=x86_64-linux-gnu -mcpu=cascadelake",
        "arm-a72": "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon",
        "rpi4": "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a72 -mattr=+neon",
        "arm-a55": "llvm -mtriple=aarch64-linux-gnu -mcpu=cortex-a55 -mattr=+neon,+dotprod",
        "cuda-sm80": "cuda -arch=sm_80",
        "cuda-sm90": "cuda -arch=sm_90",
        "accel": "accel",  # the defaults: -block=16x16 -clock=200 (backends.accel.config)
        "accel-small": "accel -block=8x8 -clock=150 -inp-buf=32 -wgt-buf=32 -acc-buf=32 -bus=8",
        "accel-large": "accel -block=32x32 -clock=250 -inp-buf=128 -wgt-buf=256 -acc-buf=256 -bus=32",
    }
)

_AARCH64_LINUX = "aarch64-linux-gnu"
_ARMV7_LINUX = "armv7l-linux-gnueabihf"
_ARM32_ONLY_CORES = frozenset(f"cortex-a{n}" for n in (5, 7, 8, 9, 12, 15, 17, 32))
_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_CUDA_ARCH = re.compile(r"sm_\d+[a-z]?")


@dataclasses.dataclass(frozen=True)
class TargetSpec:
    """A parsed target: a TVM target kind and its options (TVM option names, immutable values)."""

    kind: str
    options: Mapping[str, OptionValue] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # A read-only view keeps the frozen dataclass honest: nobody edits a spec after parsing.
        # Lists become tuples so that specs built by hand compare and print like parsed ones.
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in self.options.items()}
        object.__setattr__(self, "options", types.MappingProxyType(options))

    @property
    def text(self) -> str:
        """Canonical CLI text: kind, then flags in ``FLAGS`` order; ``parse_target(text) == self``."""
        parts = [self.kind]
        for flag in FLAGS.get(self.kind, ()):
            if flag.name in self.options:
                parts.append(f"-{flag.name}={_format_value(self.options[flag.name])}")
        return " ".join(parts)

    @property
    def triple(self) -> str | None:
        """The LLVM target triple, when one is given."""
        value = self.options.get("mtriple")
        return value if isinstance(value, str) else None

    def to_tvm_dict(self) -> dict[str, object]:
        """The dictionary ``tvm.target.Target`` accepts; list options become lists."""
        config: dict[str, object] = {"kind": self.kind}
        for name, value in self.options.items():
            config[name] = list(value) if isinstance(value, tuple) else value
        return config

    def is_host(self, host_triple: str | None = None) -> bool:
        """Whether code built for this target runs on this machine (or on ``host_triple``'s machine)."""
        if self.kind == "c":
            return True
        if self.kind != "llvm":
            return False
        if self.triple is None:
            return True
        host = _triple_parts(host_triple) if host_triple else (_normal_arch(platform.machine()), _host_os())
        arch, os_name = _triple_parts(self.triple)
        return arch == host[0] and os_name in (host[1], None)

    def is_cross(self, host_triple: str | None = None) -> bool:
        """Whether this is a CPU target for another architecture or operating system."""
        return self.kind == "llvm" and not self.is_host(host_triple)

    def is_cuda(self) -> bool:
        return self.kind == "cuda"


def parse_target(spec: str | Sequence[str]) -> TargetSpec:
    """Parse ``"llvm -mcpu=skylake-avx512"``, ``["llvm", "-mcpu=cortex-a72"]`` or a preset name."""
    tokens = _tokens(spec)
    shown = " ".join(tokens)
    if not tokens:
        raise UsageError(f"--target is empty; accepted: {_accepted_heads()}")
    head, flags = tokens[0], tokens[1:]
    if head.startswith("-"):
        raise UsageError(f"--target '{shown}' must start with a kind or preset, not a flag; accepted: {_accepted_heads()}")
    if head in PRESETS and PRESETS[head] != head:
        base = parse_target(PRESETS[head])
    elif head in FLAGS:
        base = TargetSpec(head)
    else:
        raise UsageError(f"unknown target '{head}' in --target '{shown}'; accepted: {_accepted_heads()}")
    options = dict(base.options)
    given: set[str] = set()
    for token in flags:
        name, value = _parse_flag(base.kind, token, shown)
        if name in given:
            raise UsageError(f"--target '{shown}': -{name} is given twice")
        given.add(name)
        options[name] = value
    _imply_triple(options)
    if base.kind == "accel":  # block sizes must fit the buffers: checked once, here
        from backends.accel.config import config_from_options

        config_from_options(options, shown)
    return TargetSpec(base.kind, options)


def _tokens(spec: str | Sequence[str]) -> list[str]:
    # Each item is split too, so ["llvm -mcpu=x"] (one quoted argv item) and ["llvm", "-mcpu=x"] agree.
    items = [spec] if isinstance(spec, str) else list(spec)
    if not all(isinstance(item, str) for item in items):
        raise UsageError(f"--target must be text or a list of text tokens, got {spec!r}")
    return [token for item in items for token in item.split()]


def _parse_flag(kind: str, token: str, shown: str) -> tuple[str, OptionValue]:
    name, has_value, raw = token.lstrip("-").partition("=")
    flag = next((f for f in FLAGS[kind] if f.name == name), None)
    if flag is None or not token.startswith("-"):
        accepted = ", ".join(f"-{f.name}={f.placeholder}" for f in FLAGS[kind])
        raise UsageError(f"unknown flag '{token}' for target kind '{kind}' in --target '{shown}'; accepted: {accepted}")
    where = f"--target '{shown}': -{name}"
    if flag.type is bool:
        return name, _parse_bool(raw if has_value else "true", where)
    if not raw:
        raise UsageError(f"{where} needs a value: -{name}={flag.placeholder}")
    if flag.type is int:
        return name, _parse_int(name, raw, where)
    if flag.type is tuple:
        return name, _parse_list(name, raw, where)
    return name, _parse_str(name, raw, where)


def _parse_bool(raw: str, where: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise UsageError(f"{where}={raw} is not a boolean; accepted: true, false, 1, 0")


def _parse_int(name: str, raw: str, where: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise UsageError(f"{where}={raw} is not an integer") from None
    lowest = 0 if name == "opt-level" else 1
    if value < lowest or (name == "opt-level" and value > 3):
        accepted = "0..3" if name == "opt-level" else "a positive integer"
        raise UsageError(f"{where}={raw} is out of range; accepted: {accepted}")
    return value


def _parse_list(name: str, raw: str, where: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in raw.split(","))
    if not all(items):
        raise UsageError(f"{where}={raw} has an empty entry")
    if name == "mattr":
        unsigned = [item for item in items if item[0] not in "+-"]
        if unsigned:
            raise UsageError(f"{where}: feature '{unsigned[0]}' needs a sign, e.g. -mattr=+{unsigned[0]}")
    return items


def _parse_str(name: str, raw: str, where: str) -> str:
    if name == "mfloat-abi" and raw not in ("hard", "soft"):
        raise UsageError(f"{where}={raw} is not accepted; accepted: hard, soft")
    if name == "arch" and not _CUDA_ARCH.fullmatch(raw):
        raise UsageError(f"{where}={raw} is not a CUDA architecture; accepted: sm_NN, e.g. sm_80, sm_90a")
    return raw


def _imply_triple(options: dict[str, OptionValue]) -> None:
    """An Arm CPU named without a triple means Arm Linux: building it for the host triple is never meant."""
    cpu = options.get("mcpu")
    if "mtriple" in options or not isinstance(cpu, str):
        return
    if cpu in _ARM32_ONLY_CORES:
        options["mtriple"] = _ARMV7_LINUX
    elif cpu.startswith(("cortex-a", "neoverse")):
        options["mtriple"] = _AARCH64_LINUX


def _format_value(value: OptionValue) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _accepted_heads() -> str:
    kinds = ", ".join(FLAGS)
    presets = ", ".join(name for name in PRESETS if name not in FLAGS)
    return f"kinds {kinds}; presets {presets}"


def _normal_arch(arch: str) -> str:
    return _ARCH_ALIASES.get(arch.lower(), arch.lower())


def _host_os() -> str:
    if sys.platform.startswith("linux"):
        return "linux"
    return {"win32": "windows"}.get(sys.platform, sys.platform)


def _triple_parts(triple: str) -> tuple[str, str | None]:
    """(architecture, operating system or None when the triple names none) of an LLVM triple."""
    parts = triple.lower().split("-")
    rest = "-".join(parts[1:])
    if "android" in rest:
        os_name: str | None = "android"  # Linux kernel, but another libc: not the host's binaries
    elif "linux" in rest:
        os_name = "linux"
    elif any(word in rest for word in ("darwin", "macos", "ios")):
        os_name = "darwin" if "ios" not in rest else "ios"
    elif any(word in rest for word in ("windows", "win32", "mingw")):
        os_name = "windows"
    elif len(parts) == 1:
        os_name = None
    else:
        os_name = rest  # "none-eabi", "unknown-elf": bare metal or unknown, never the host
    return _normal_arch(parts[0]), os_name
