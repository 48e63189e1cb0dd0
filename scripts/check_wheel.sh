#!/usr/bin/env bash
# Build the wheel and run it the way a user who installs it would: a fresh virtual
# environment outside the checkout, an empty working directory, `clash-pipeline demo
# --days 1` (simulated API, embedded PostgreSQL, dbt, Prefect, the GX monitor).
# Everything the installed package needs must come from the wheel itself.
#
#   bash scripts/check_wheel.sh            (about two minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
cleanup() {
    # stop the demo's embedded PostgreSQL if it is still up, then remove everything
    if [ -x "$work/venv/bin/clash-pipeline" ] && [ -d "$work/run/.clash-pipeline" ]; then
        (cd "$work/run" && "$work/venv/bin/clash-pipeline" db stop >/dev/null 2>&1) || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

uv build --wheel --out-dir "$work/dist" >/dev/null
uv venv --quiet --python 3.11 "$work/venv"
uv pip install --quiet --python "$work/venv/bin/python" "$work"/dist/*.whl
mkdir "$work/run"
cd "$work/run"
# Nothing of the checkout is reachable from here: the package finds its project files
# (dbt project, migrations, gx, prefect.yaml) inside the wheel.
unset CLASH_PROJECT_DIR DATABASE_URL COC_API_TOKEN
"$work/venv/bin/clash-pipeline" demo --days 1
"$work/venv/bin/python" - <<'PY'
import clash_pipeline.project as project
assert not project.is_checkout(), project.project_dir()
print(f"wheel ok: project files from {project.project_dir()}")
PY
