"""Integrations with other frameworks (pytest plugin, ...); each imports its framework lazily."""
