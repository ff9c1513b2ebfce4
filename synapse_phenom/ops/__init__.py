"""Operator tooling that does I/O: homeserver config rendering (``hsconfig``), the local
dev stack (``devstack``), the Synapse admin HTTP client (``admin_client``), private file
writing (``files``), the offline Cognito emulator for dev and tests (``cognito_emulator``,
``sso_flow``, ``dev_sso``), the ``phenom-chat admin`` actions (``admin_actions``), the
deployment doctor (``doctor``, ``doctor_*``) and the metric-name check of the alert rules and
dashboards (``metric_names``). Used by the ``phenom-chat`` CLI and the tests, never by Synapse.
"""
