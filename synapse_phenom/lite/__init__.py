"""Implementation B, "Hasura Lite": chat tables in PostgreSQL (schema ``chat``) under Hasura.

- ``project``: the Hasura project files (``hasura/``: migrations, metadata), found the same way
  from a checkout and from a pip-installed package.
- ``migrate``: applies the migrations with psycopg 3, recording versions the way the Hasura
  CLI does (``phenom-chat lite migrate``).
- ``provision``: users, rooms and group-based memberships in B, planned by the rooms core
  (``synapse_phenom.rooms.membership``), the same group model as Implementation A.
- ``previews_cache``: the link-preview cards cache (``chat.link_previews``).
"""
