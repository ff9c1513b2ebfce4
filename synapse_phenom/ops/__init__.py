"""Operator tooling that does I/O: homeserver config rendering (``hsconfig``), the local
dev stack (``devstack``), the Synapse admin HTTP client (``admin_client``) and private
file writing (``files``). Used by the ``phenom-chat`` CLI and the tests, never by Synapse.
"""
