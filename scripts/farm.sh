#!/usr/bin/env bash
# Installs everything and starts a local farm in ./farm: the coordinator (SQLite file, HTTP
# API and dryad link) with a demo admin user, three simulated MuxPi dryads with different
# caps and one simulated generic board, enrolled and IDLE. Ctrl-C stops it all; running it
# again resumes the same farm (same database, same token, same dryad identities).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh >&2

HTTP=${BORUTA_HTTP:-127.0.0.1:8487}
LINK=${BORUTA_LINK:-127.0.0.1:7175}
URL="http://$HTTP"
mkdir -p farm && chmod 700 farm
umask 077
coordinator=(.venv/bin/boruta-coordinator --db farm/boruta.db)
"${coordinator[@]}" migrate >/dev/null
if [ ! -s farm/admin.token ]; then
    if "${coordinator[@]}" user list | grep -q '^admin'; then
        "${coordinator[@]}" user token admin | tail -n 1 > farm/admin.token
    else
        "${coordinator[@]}" user add admin --admin | tail -n 1 > farm/admin.token
    fi
fi
TOKEN=$(cat farm/admin.token)
"${coordinator[@]}" enrol-token create --ttl 3600 | tail -n 1 > farm/enrol.token

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

"${coordinator[@]}" serve --http "$HTTP" --link "$LINK" > farm/coordinator.log 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q "coordinator ready on" farm/coordinator.log && break
    kill -0 "${pids[0]}" 2>/dev/null || { cat farm/coordinator.log; exit 1; }
    sleep 0.2
done

boards=("rpi4:arm64" "odroid-xu4:armhf" "rpi3:armhf")
for i in 0 1 2; do
    dir="farm/dryad-$((i + 1))"
    mkdir -p "$dir"
    cat > "$dir/dryad.toml" <<TOML
# A simulated MuxPi: the STM32 firmware simulator on a pty, the OLED saved as oled.png.
coordinator = "$LINK"
enrol_token_file = "../enrol.token"
profile = "sim"
state_dir = "state"
ssh_address = "127.0.0.1:22"

[caps]
device_type = "${boards[$i]%%:*}"
arch = "${boards[$i]#*:}"

[job_user]
manage = false  # a laptop: no real job users

[health]
interval = 3600

[sim]
state_file = "board.json"
png_file = "oled.png"
TOML
    .venv/bin/dryad --config "$dir/dryad.toml" > "$dir/dryad.log" 2>&1 &
    pids+=($!)
done
# One simulated generic board (no MuxPi): mock GPIO pins, a file as its USB-SD-Mux.
mkdir -p farm/dryad-generic
sed -e "s|^coordinator = .*|coordinator = \"$LINK\"|" -e 's|\.\./farm/dryad-generic/||' \
    -e 's|\.\./farm/|../|' scripts/generic-sim.toml > farm/dryad-generic/dryad.toml
.venv/bin/dryad --config farm/dryad-generic/dryad.toml > farm/dryad-generic/dryad.log 2>&1 &
pids+=($!)

api() { curl -sf -H "Authorization: Bearer $TOKEN" "$@"; }
workers() { api -X POST "$URL/api/v1/workers/list" | .venv/bin/python -c "$1"; }
for _ in $(seq 150); do
    n=$(workers 'import json,sys; print(sum(w.get("Connected", False) for w in json.load(sys.stdin)))')
    [ "$n" -ge 4 ] && break
    sleep 0.2
done
for uuid in $(workers 'import json,sys; [print(w["WorkerUUID"]) for w in json.load(sys.stdin) if w["State"] == "MAINTENANCE"]'); do
    api -X POST "$URL/api/v1/workers/$uuid/setstate" -d '{"WorkerState": "IDLE"}' >/dev/null
done
for _ in $(seq 150); do
    n=$(workers 'import json,sys; print(sum(w["State"] == "IDLE" for w in json.load(sys.stdin)))')
    [ "$n" -ge 4 ] && break
    sleep 0.2
done

cat <<USAGE

  Boruta farm on $URL  —  3 simulated MuxPi dryads and 1 generic board enrolled and IDLE (dryad link $LINK)
$(workers 'import json,sys
for w in json.load(sys.stdin): print("    %s  %-12s %s" % (w["WorkerUUID"], w["State"], w["Caps"].get("device_type")))')

  Admin token (also in farm/admin.token):  $TOKEN

  Reserve a board from another terminal:
    export BORUTA_URL=$URL BORUTA_TOKEN=\$(cat farm/admin.token)
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \$BORUTA_URL/api/v1/reqs/ \\
         -d '{"Priority": 8, "Caps": {"device_type": "rpi4"}}'               # → {"ReqID":N}
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \\
         "\$BORUTA_URL/api/v1/reqs/N/acquire_worker?wait=60"                    # SSH access
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \$BORUTA_URL/api/v1/reqs/N/close
    curl -s -H "Authorization: Bearer \$BORUTA_TOKEN" -X POST \$BORUTA_URL/api/v1/workers/list

  Each board's OLED: farm/dryad-*/oled.png   Logs: farm/*.log, farm/dryad-*/dryad.log
  Ctrl-C stops the farm.
USAGE
wait "${pids[0]}"
