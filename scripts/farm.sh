#!/usr/bin/env bash
# Installs everything and starts a local farm in ./farm: the coordinator on a SQLite file,
# with a demo admin user whose token is kept in farm/admin.token. Ctrl-C stops it; running
# it again resumes the same farm (same database, same token).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >&2

HTTP=${BORUTA_HTTP:-127.0.0.1:8487}
mkdir -p farm && chmod 700 farm
coordinator=(.venv/bin/boruta-coordinator --db farm/boruta.db)
"${coordinator[@]}" migrate >/dev/null
if [ ! -s farm/admin.token ]; then
    umask 077
    if "${coordinator[@]}" user list | grep -q '^admin'; then
        "${coordinator[@]}" user token admin | tail -n 1 > farm/admin.token
    else
        "${coordinator[@]}" user add admin --admin | tail -n 1 > farm/admin.token
    fi
fi
TOKEN=$(cat farm/admin.token)
URL="http://$HTTP"

cat <<USAGE

  Boruta farm starting on $URL   (database: farm/boruta.db, log below)

  Admin token (also in farm/admin.token):
    $TOKEN

  Try it from another terminal:
    export BORUTA_URL=$URL BORUTA_TOKEN=\$(cat farm/admin.token)
    curl -s \$BORUTA_URL/api/v1/version
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \$BORUTA_URL/api/v1/workers/list
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \$BORUTA_URL/api/v1/reqs/ \\
         -d '{"Priority": 8, "Caps": {"device_type": "rpi4"}}'
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \$BORUTA_URL/api/v1/reqs/list
    .venv/bin/boruta-coordinator --db farm/boruta.db user add alice --groups lab1

  The Go client works unchanged with  http://admin:<token>@$HTTP/
  OpenAPI document: $URL/api/v1/openapi.json      Ctrl-C stops the farm.

USAGE
exec "${coordinator[@]}" serve --http "$HTTP"
