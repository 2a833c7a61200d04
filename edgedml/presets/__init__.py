"""The trained presets' weight files (see edgedml.models.presets)."""
