"""Run inside PyAirbyte's own virtualenv (it is not a dependency of des-connector): one write of
des-source's ``users`` stream into des-destination, both PyAirbyte local-executable connectors.

usage: drive.py BIN_DIR SOURCE_ROOT STORE_ROOT WRITE_STRATEGY [GENERATION_ID MINIMUM_GENERATION_ID SYNC_ID]

PyAirbyte's ``Source.get_configured_catalog`` leaves the generation fields empty and its
``CatalogProvider`` then sets generation_id = minimum_generation_id = sync_id = 1. With the three
numbers given, the catalog carries them instead (what the Airbyte platform sends for a refresh).
"""

from __future__ import annotations

import json
import sys

import airbyte as ab


def main(argv: list[str]) -> None:
    bin_dir, source_root, store_root, strategy = argv[:4]
    source = ab.get_source("des-source", config={"root_url": source_root, "file_format": "auto", "stream_depth": 1,
                                                 "on_bad_record": "fail"},
                           local_executable=f"{bin_dir}/des-source")
    source.select_streams(["users"])
    if len(argv) > 4:
        generation, minimum, sync_id = map(int, argv[4:7])
        configured = source.get_configured_catalog

        def with_generation(*args, **kwargs):
            catalog = configured(*args, **kwargs)
            for stream in catalog.streams:
                stream.generation_id, stream.minimum_generation_id, stream.sync_id = generation, minimum, sync_id
            return catalog

        source.get_configured_catalog = with_generation  # type: ignore[method-assign]
    destination = ab.get_destination("des-destination", config={"root_url": store_root},
                                     local_executable=f"{bin_dir}/des-destination")
    result = destination.write(source, cache=False, state_cache=False, write_strategy=strategy)
    print(json.dumps({"ok": True, "result": type(result).__name__}))


if __name__ == "__main__":
    main(sys.argv[1:])
