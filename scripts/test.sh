#!/usr/bin/env bash
# Installs everything, then runs the whole suite: ruff, mypy (strict), import contracts,
# pytest with branch coverage (gate in pyproject) and 100% branch coverage of the domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"

echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== import contracts"; lint-imports
echo "== pytest"
rm -f .coverage .coverage.*
COVERAGE_PROCESS_START="$PWD/pyproject.toml" pytest --cov --cov-report= "$@"
# --append: late subprocesses (the key makers end after their coordinator) leave files
# pytest-cov did not combine; without it their data alone would replace the whole run's.
coverage combine -q --append 2>/dev/null || true
coverage report
echo "== domain coverage (must be 100% of branches)"
coverage report --include='coordinator/domain/*' --fail-under=100
