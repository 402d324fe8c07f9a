"""Airbyte protocol entry points: ``des-source`` and ``des-destination``, and the messages they speak."""
