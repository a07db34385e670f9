"""CARN as a gradguide backbone plugin (entry point ``carn`` in group ``gradguide``)."""
from .arch import CARN, carn_spec

__all__ = ["CARN", "carn_spec"]
