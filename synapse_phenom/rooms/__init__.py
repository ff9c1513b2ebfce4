"""The rooms capability's pure core: config, membership planning, tables.

``config`` (the managed rooms, groups → rooms), ``membership`` (one planner for people
and AI agents), ``store`` (groups and room-creation claims). The Synapse adapters are
``synapse_phenom.modules.rooms`` and ``synapse_phenom.modules.agents``.
"""
