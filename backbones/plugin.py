"""Built-in backbones as a gradguide plugin (entry point ``builtin_backbones``)."""
from __future__ import annotations

from gradguide.hookspecs import hookimpl


@hookimpl
def gradguide_backbones() -> list:
    from .rrdb import backbone_entries as rrdb_entries

    return [*rrdb_entries()]
