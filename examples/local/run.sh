#!/usr/bin/env bash
# The main job on the bundled testdata, with the embedded defaults: a local folder as the store
# root and a SQLite catalog beside it. No server to start. Safe to run again (incremental).
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== des sync: testdata/ -> out/store (records, incremental by LastModified)"
des sync --config examples/local/source.json --destination examples/local/destination.json \
         --state out/state.json --no-progress

echo "== des datasets list"
des datasets --root out/store list

echo "== pack testdata/ into one container and list it"
des pack testdata -o out/testdata.des --overwrite
des ls out/testdata.des | head -5

echo "== read through des:// with pandas"
python3 - <<'PY'
import pandas as pd

from connector.store import Store

users = pd.read_csv("des://users/users_2024-01.csv::out/testdata.des")
print(f"users/users_2024-01.csv from out/testdata.des: {len(users)} rows, columns {list(users.columns)}")
with Store("out/store") as store:  # the catalog knows where each datarange container is
    container = store.dataranges("orders")[0].url
first = "0".zfill(20) + ".json"
print(f"record 0 of dataset orders, via des://{first}::{container}:")
print(pd.read_json(f"des://{first}::{container}", lines=True).to_string(index=False))
PY
