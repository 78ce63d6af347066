"""Which resource keeps a DaemonSet name (operator mode).

Two resources of one namespace that want one DaemonSet name: the older keeps it (creation
time, then the name for a tie), and the newer is reported as a name conflict and runs
nothing. A resource claims the name of its last valid spec: an invalid edit claims nothing
new (it changes nothing that runs, the name included), and a resource that never had a valid
spec claims none. Each spec is read once per generation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from imagepuller import objects
from imagepuller.config import Config, ConfigError
from imagepuller.policy import ResourcePolicy
from imagepuller.resource import KIND, config_from_resource
from imagepuller.resourcewatch import API_VERSION, Key, key_of


@dataclass
class Verdict:
    """Which resources of a namespace hold a DaemonSet name another one wants."""

    resources: dict[Key, dict[str, Any]] = field(default_factory=dict)
    conflicts: dict[Key, Key] = field(default_factory=dict)  # newer -> the one keeping it


def _age(resource: dict[str, Any]) -> tuple[str, str]:
    """Older first: creation time (RFC 3339 sorts as text), then the name for a tie."""
    return objects.creation_timestamp(resource), objects.name(resource)


class NameClaims:
    def __init__(self, policy: ResourcePolicy, running: Callable[[Key], str | None]):
        self.policy = policy
        self.running = running  # the DaemonSet name a resource's controller keeps now
        # Each resource's spec as read, for the generation it was read at: a Config, or the
        # problems that make it invalid.
        self._parsed: dict[Key, tuple[int, Config | ConfigError]] = {}

    def parse(self, key: Key, resource: dict[str, Any]) -> Config | ConfigError:
        """The resource's spec read as settings, once per generation."""
        generation = objects.generation(resource)
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == generation:
            return cached[1]
        try:
            parsed: Config | ConfigError = config_from_resource(resource, self.policy)
        except ConfigError as err:
            parsed = err
        self._parsed[key] = (generation, parsed)
        return parsed

    def claimed_name(self, key: Key, resource: dict[str, Any]) -> str | None:
        """The DaemonSet name a resource holds a claim on: its last valid spec's."""
        parsed = self.parse(key, resource)
        if isinstance(parsed, Config):
            return parsed.daemonset_name
        return self.running(key)

    def judge(self, objects: list[dict[str, Any]]) -> Verdict:
        """Of resources that claim one DaemonSet name in one namespace, the older keeps it."""
        verdict = Verdict()
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for obj in objects:
            resource = {**obj, "apiVersion": API_VERSION, "kind": KIND}
            key = key_of(resource)
            verdict.resources[key] = resource
            name = self.claimed_name(key, resource)
            if name is not None:
                groups.setdefault((key[0], name), []).append(resource)
        for members in groups.values():
            members.sort(key=_age)
            winner = key_of(members[0])
            for newer in members[1:]:
                verdict.conflicts[key_of(newer)] = winner
        return verdict

    def forget(self, key: Key) -> None:
        self._parsed.pop(key, None)
