"""An environment for load_config that remembers which variables it was asked for."""

from __future__ import annotations


class RecordingEnv(dict):
    """An environment that remembers which variables the configuration asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.asked: set[str] = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)
