"""des-connector: files from object storage into range-readable DES containers.

Sub-packages, one job each:

- :mod:`connector.des`     the DES v1 container (format, writer, reader, ``des://`` filesystem)
- :mod:`connector.source`  CSV / JSON / Parquet files -> Arrow record batches, incremental state
- :mod:`connector.store`   datasets, datapoints and dataranges over DES containers, SQLite catalog
- :mod:`connector.airbyte` the Airbyte protocol entry points ``des-source`` / ``des-destination``
- :mod:`connector.cli`     the human CLI ``des``
"""

__version__ = "0.1.0"
