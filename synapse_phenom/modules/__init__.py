"""Synapse modules, loaded by operators from homeserver.yaml ``modules:``."""
