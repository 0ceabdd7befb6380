"""Which packages the offline GPU host needs copied, and whether the copy stays within its size budget.

Pure logic, no downloads: ``plan`` walks the ``Requires-Dist`` closure of a tier's root requirements
through a ``fetch`` function (``bundle`` downloads wheels; a test passes recorded metadata) and decides
for every package whether the device image already has it, whether it must travel, or whether it is
provably unused there. Versions come from our pins (``constraints.txt``) so the device runs what the
project tested; a package the image has is used as it is unless its version fails a requirement of
something we carry, or running our code on that version was seen to fail (``Tier.override``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

# The host image's interpreter (Python 3.12.3 at /opt/torch/.venv/bin/python3, x86-64 Linux).
DEVICE_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}
CALL_LIMIT_BYTES = 64 * 2**20  # working tree + archives copied to the host at once (the transfer budget)


@dataclass(frozen=True)
class Dist:
    """One downloaded distribution: what ``fetch`` returns."""

    name: str
    version: str
    requires: tuple[str, ...]  # Requires-Dist lines, markers included
    size: int = 0  # bytes of the wheel


@dataclass(frozen=True)
class Tier:
    """A set of benchmarks and what they need beyond the device image (and beyond ``base``)."""

    name: str
    roots: tuple[str, ...]
    imports: tuple[str, ...] = ()  # modules the device-side check imports: the tier works if these do
    base: str | None = None
    drop: dict[str, str] = field(default_factory=dict)  # name -> why it is never used on the device
    override: dict[str, str] = field(default_factory=dict)  # name -> why the image's version is not used
    strip: tuple[str, ...] = ()  # globs under the installed tree that nothing we run touches


@dataclass(frozen=True)
class Decision:
    name: str
    action: str  # "carry" | "image" | "drop"
    version: str | None
    reason: str
    required_by: str


@dataclass
class Plan:
    tier: str
    decisions: list[Decision]
    dists: dict[str, Dist]  # the carried ones
    conflicts: list[str]

    def carried(self) -> list[Decision]:
        return [d for d in self.decisions if d.action == "carry"]


def canonical(name: str) -> str:
    return canonicalize_name(name)


def read_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a constraints file; comments and other forms are skipped."""
    pins = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def read_image(text: str) -> dict[str, str | None]:
    """The device image's packages: ``name`` or ``name==version`` (version None = not read yet)."""
    image: dict[str, str | None] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            image[canonical(name)] = version.strip() or None
    return image


def _applies(req: Requirement, extra: str) -> bool:
    """Whether a Requires-Dist line holds on the device for ``extra`` ("" = the base install)."""
    if req.marker is None or (extra and "extra" not in str(req.marker)):
        return extra == ""
    return req.marker.evaluate({**DEVICE_ENV, "extra": extra})


def plan(
    tier: Tier,
    pins: dict[str, str],
    image: dict[str, str | None],
    fetch: Callable[[str, str | None], Dist],
    provided: dict[str, str] | None = None,
    aliases: dict[str, str] | None = None,
) -> Plan:
    """Decide every package of ``tier``'s closure.

    ``provided`` (name -> version) are packages an earlier tier already carries; ``aliases`` maps a
    requirement to the image package that provides the same module (``opencv-python`` is satisfied by
    the image's ``opencv-python-headless``). A package the image has with an unread version is trusted:
    the device-side ``check`` prints every requirement of a carried package that its environment fails.
    """
    provided = {canonical(k): v for k, v in (provided or {}).items()}
    aliases = {canonical(k): canonical(v) for k, v in (aliases or {}).items()}
    drop = {canonical(k): v for k, v in tier.drop.items()}
    override = {canonical(k): v for k, v in tier.override.items()}
    decisions: dict[str, Decision] = {}
    dists: dict[str, Dist] = {}
    conflicts: list[str] = []
    done_extras: dict[str, set[str]] = {}
    queue: list[tuple[Requirement, str]] = [(Requirement(r), "tier " + tier.name) for r in tier.roots]
    while queue:
        req, parent = queue.pop(0)
        name = canonical(req.name)
        known = decisions.get(name)
        if known is not None and known.action != "carry":
            if known.action == "image" and known.version and not req.specifier.contains(known.version, True):
                conflicts.append(f"{parent} requires {req}, the image has {name} {known.version}")
            continue
        if name not in decisions:
            decisions[name] = _decide(name, req, parent, pins, image, provided, aliases, drop, override)
            if decisions[name].action != "carry":
                continue
            dists[name] = fetch(name, pins.get(name))
            decisions[name] = Decision(
                name, "carry", dists[name].version, decisions[name].reason, decisions[name].required_by
            )
        dist = dists[name]
        if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
            conflicts.append(f"{parent} requires {req}, carried {name} is {dist.version}")
        new = ({""} | set(req.extras)) - done_extras.setdefault(name, set())
        done_extras[name] |= new
        for line in dist.requires:
            sub = Requirement(line)
            if any(_applies(sub, e) for e in new):
                queue.append((sub, f"{name}[{','.join(sorted(req.extras))}]" if req.extras else name))
    return Plan(tier.name, sorted(decisions.values(), key=lambda d: (d.action, d.name)), dists, conflicts)


def _decide(
    name: str,
    req: Requirement,
    parent: str,
    pins: dict[str, str],
    image: dict[str, str | None],
    provided: dict[str, str],
    aliases: dict[str, str],
    drop: dict[str, str],
    override: dict[str, str],
) -> Decision:
    if name in drop:
        return Decision(name, "drop", None, drop[name], parent)
    if name in provided:
        return Decision(name, "image", provided[name], "carried by the base tier", parent)
    if name in override:
        return Decision(name, "carry", pins.get(name), override[name], parent)
    held = name if name in image else aliases.get(name)
    if held is None or held not in image:
        return Decision(name, "carry", pins.get(name), "not in the device image", parent)
    version = image[held]
    label = held if held == name else f"{held} (provides {name})"
    if version is None:
        return Decision(name, "image", None, f"in the image as {label}, version not read", parent)
    if req.specifier and not req.specifier.contains(Version(version), prereleases=True):
        return Decision(
            name, "carry", pins.get(name), f"image has {version}, {parent} requires {req.specifier}", parent
        )
    return Decision(name, "image", version, f"in the image as {label} {version}", parent)


@dataclass(frozen=True)
class Budget:
    """Bytes one call sends: the working tree plus its carried paths, against the 64 MiB limit."""

    tree: int
    carried: dict[str, int]
    limit: int = CALL_LIMIT_BYTES

    @property
    def total(self) -> int:
        return self.tree + sum(self.carried.values())

    @property
    def left(self) -> int:
        return self.limit - self.total

    def check(self) -> None:
        if self.left < 0:
            parts = ", ".join(f"{p} {b / 2**20:.1f} MiB" for p, b in self.carried.items())
            raise ValueError(
                f"one device call would send {self.total / 2**20:.1f} MiB (working tree {self.tree / 2**20:.1f} MiB, "
                f"{parts}); the limit is {self.limit / 2**20:.0f} MiB"
            )
