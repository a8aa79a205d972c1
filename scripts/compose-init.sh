#!/usr/bin/env bash
# One-time setup of a cbm-airflow Compose deployment, run by the airflow-init service after
# the metadata database is migrated (it can be re-run safely):
#   1. the Airflow pool(s) the AOIs throttle extraction with (cbm_extract by default; an
#      existing pool keeps its slots), CBM_POOL_SLOTS slots (default 4) when created;
#   2. the results schema of every AOI file: python -m cbm_ops init-db --aoi FILE
#      (database URL from AIRFLOW_CONN_CBM_DB / CBM_DB_URL, never printed).
set -euo pipefail

project="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
aoi_dir="${CBM_AOI_DIR:-$project/include/aois}"
slots="${CBM_POOL_SLOTS:-4}"
export PYTHONPATH="$project${PYTHONPATH:+:$PYTHONPATH}"

shopt -s nullglob
aois=("$aoi_dir"/*.yaml "$aoi_dir"/*.yml)
echo "compose-init: ${#aois[@]} AOI file(s) in $aoi_dir"

# Pools: cbm_extract plus the `pool` of every AOI (validated by cbm_ops.config).
pools="$(python - "${aois[@]}" <<'PY'
import sys

from cbm_ops.config import load_aoi

print("\n".join(sorted({"cbm_extract", *(load_aoi(f).pool for f in sys.argv[1:])})))
PY
)"
while IFS= read -r pool; do
  if airflow pools get "$pool" >/dev/null 2>&1; then
    echo "compose-init: pool $pool exists (slots unchanged)"
  else
    airflow pools set "$pool" "$slots" "cbm-airflow extraction" >/dev/null
    echo "compose-init: created pool $pool with $slots slots"
  fi
done <<<"$pools"

for f in "${aois[@]}"; do
  echo "compose-init: results schema of $(basename "$f")"
  python -m cbm_ops init-db --aoi "$f"
done
echo "compose-init: done"
