"""Pure core of the moderation module: config, normalisation, matching, extraction, rules.

Nothing here imports Synapse; ``synapse_phenom.modules.moderation`` is the thin glue.
"""
