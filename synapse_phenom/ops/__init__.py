"""Operator tooling that does I/O: homeserver config rendering (``hsconfig``), the local
dev stack (``devstack``), the Synapse admin HTTP client (``admin_client``), private file
writing (``files``), and the offline Cognito emulator for dev and tests (``cognito_emulator``,
``sso_flow``, ``dev_sso``). Used by the ``phenom-chat`` CLI and the tests, never by Synapse.
"""
