"""Built-in backbones, registered through the gradguide plugin hooks (import name: gradguide_backbones)."""
