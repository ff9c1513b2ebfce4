"""Phenom chat: Synapse modules, shared cores and the MCP sidecar."""

__version__ = "0.1.0"
