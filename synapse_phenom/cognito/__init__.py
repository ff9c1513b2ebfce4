"""The Cognito capability's pure core: ID-token claims, config, the SSO hand-over tables.

The Synapse adapter is ``synapse_phenom.modules.cognito`` (the OIDC user mapping
provider); it supplies groups, the rooms capability reconciles memberships.
"""
