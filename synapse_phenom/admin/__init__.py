"""Core of the admin actions (pure, no synapse/twisted): lockdown power levels, slow mode,
durations, audit details (``core``) and the ops module's tables (``store``).

Used by the Synapse adapter ``synapse_phenom.modules.ops`` and by ``phenom-chat admin``
(``synapse_phenom.ops.admin_actions``); docs/operations.md.
"""
