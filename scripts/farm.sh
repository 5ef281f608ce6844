#!/usr/bin/env bash
# Starts a local farm in ./farm: the coordinator (SQLite file, HTTP API and dryad link) with
# a demo admin user, three simulated MuxPi dryads with different caps and one simulated
# generic board, each with its own SSH server for the running job's key
# (docs/simulated-board.md). It first installs what the farm needs (install.sh --farm).
# Ctrl-C stops it all; running it again resumes the same farm (database, token, dryad
# identities, running jobs).
#
# Environment: BORUTA_FARM_DIR (./farm), BORUTA_HTTP (127.0.0.1:8487), BORUTA_LINK
# (127.0.0.1:7175), BORUTA_TUNNEL_PORTS (20000-20999): another farm beside this one.
# BORUTA_BIN: the folder of an installed boruta-coordinator, dryad and boruta to use
# instead of installing .venv (the end-to-end test runs the farm with its own).
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s%N)
ROOT=$PWD
FARM=${BORUTA_FARM_DIR:-$ROOT/farm}
[ -d "$FARM" ] || { mkdir -p "$FARM" && chmod 700 "$FARM"; }
FARM=$(cd "$FARM" && pwd)

# One farm per folder. The lock comes before anything else is touched, and every process
# of the farm inherits it: a second run, even after this script was killed, changes nothing.
exec 9>>"$FARM/farm.lock"
if ! flock -n 9; then
    echo "farm.sh: a farm already runs in $FARM (pid $(cat "$FARM/farm.pid" 2>/dev/null \
|| echo '?')): use it, or stop it with Ctrl-C where it runs" >&2
    exit 1
fi
echo $$ > "$FARM/farm.pid"

if [ -z "${BORUTA_BIN:-}" ]; then
    bash scripts/install.sh --farm >&2
fi

HTTP=${BORUTA_HTTP:-127.0.0.1:8487}
LINK=${BORUTA_LINK:-127.0.0.1:7175}
TUNNELS=${BORUTA_TUNNEL_PORTS:-20000-20999}
URL="http://$HTTP"
BIN=${BORUTA_BIN:-$ROOT/.venv/bin}
umask 077
cat > "$FARM/coordinator.toml" <<TOML
# Written by scripts/farm.sh at each start (BORUTA_HTTP, BORUTA_LINK, BORUTA_TUNNEL_PORTS).
http = "$HTTP"
link = "$LINK"
tunnel_ports = "$TUNNELS"
TOML
coordinator=("$BIN/boruta-coordinator" --config "$FARM/coordinator.toml" --db "$FARM/boruta.db")
# Each command costs a second or two of start-up: a restart runs only those it needs.
enrol=0
[ -e "$FARM/boruta.db" ] || { "${coordinator[@]}" migrate >/dev/null; enrol=1; }
if [ ! -s "$FARM/admin.token" ]; then
    if "${coordinator[@]}" user list | grep -q '^admin'; then
        "${coordinator[@]}" user token admin | tail -n 1 > "$FARM/admin.token"
    else
        "${coordinator[@]}" user add admin --admin | tail -n 1 > "$FARM/admin.token"
    fi
fi
TOKEN=$(cat "$FARM/admin.token")
boards=("dryad-1:rpi4:arm64" "dryad-2:odroid-xu4:armhf" "dryad-3:rpi3:armhf" "dryad-generic")
for board in "${boards[@]}"; do
    [ -e "$FARM/${board%%:*}/state/enrolled" ] || enrol=1
done
if [ $enrol = 1 ]; then  # a board to enrol (a new database forgets the others too)
    "${coordinator[@]}" enrol-token create --ttl 3600 | tail -n 1 > "$FARM/enrol.token"
fi

# The boruta command's configuration: this farm's URL and token. The user's own file is
# left alone; one written by this script (its first line says so) is brought up to date.
printf 'url = "%s"\ntoken = "%s"\n' "$URL" "$TOKEN" > "$FARM/boruta.toml"
cli_config=${XDG_CONFIG_HOME:-$HOME/.config}/boruta/config.toml
marker="# Written by boruta's scripts/farm.sh"
if [ ! -e "$cli_config" ] || head -n 1 "$cli_config" | grep -qF "$marker"; then
    mkdir -p "$(dirname "$cli_config")"
    { echo "$marker for $FARM (delete this line to keep your edits)"
      cat "$FARM/boruta.toml"; } > "$cli_config"
    chmod 600 "$cli_config"
    use="export PATH=\"$BIN:\$PATH\"        # boruta reads $cli_config"
else
    use="export PATH=\"$BIN:\$PATH\" BORUTA_URL=$URL BORUTA_TOKEN=\$(cat $FARM/admin.token)"
fi
cli() { BORUTA_URL=$URL BORUTA_TOKEN=$TOKEN "$BIN/boruta" "$@"; }

pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM

log=$FARM/coordinator.log
offset=$(($(stat -c %s "$log" 2>/dev/null || echo 0) + 1))
"${coordinator[@]}" serve >> "$log" 2>&1 &
pids+=($!)

# The dryads start while the coordinator does (each takes seconds to import); they dial
# until it answers.
dirs=() new=()
for board in "${boards[@]}"; do
    dir="$FARM/${board%%:*}"
    dirs+=("$dir")
    mkdir -p "$dir"
    [ -e "$dir/state/uuid" ] || new+=("$dir")
    if [ "$board" = dryad-generic ]; then
        # scripts/generic-sim.toml with this farm's coordinator and its paths from here.
        sed -e "s|^coordinator = .*|coordinator = \"$LINK\"|" \
            -e 's|\.\./farm/dryad-generic/||' -e 's|\.\./farm/|../|' \
            scripts/generic-sim.toml > "$dir/dryad.toml"
    else
        caps=${board#*:}
        cat > "$dir/dryad.toml" <<TOML
# A simulated MuxPi: the STM32 firmware simulator on a pty, the OLED saved as oled.png,
# and an SSH server for the running job's key (docs/simulated-board.md).
coordinator = "$LINK"
enrol_token_file = "../enrol.token"
profile = "sim"
state_dir = "state"
ssh_address = "127.0.0.1:0"  # the simulated sshd, on any free port (kept, registered)

[caps]
device_type = "${caps%%:*}"
arch = "${caps#*:}"

[job_user]
manage = false   # a laptop: no system users
simulate = true  # the job logs in as you, in home/, with the job's key only
home = "home"

[health]
interval = 3600

[sim]
state_file = "board.json"
png_file = "oled.png"
TOML
    fi
    "$BIN/dryad" --config "$dir/dryad.toml" >> "$dir/dryad.log" 2>&1 &
    pids+=($!)
done

until tail -c "+$offset" "$log" 2>/dev/null | grep -q "coordinator ready on"; do
    kill -0 "${pids[0]}" 2>/dev/null || { tail -c "+$offset" "$log" >&2; exit 1; }
    sleep 0.1
done

# Ready when every board has registered; new ones are put in service (IDLE), the others
# keep the state they had (a running job, maintenance).
uuids=()
alive() {  # every dryad still runs; else the farm stops with the last lines of its log
    for n in "${!dirs[@]}"; do
        kill -0 "${pids[$((n + 1))]}" 2>/dev/null || { tail "${dirs[$n]}/dryad.log" >&2; exit 1; }
    done
}
for dir in "${dirs[@]}"; do
    until [ -s "$dir/state/uuid" ]; do alive; sleep 0.1; done
    uuids+=("$(cat "$dir/state/uuid")")
done
count_connected() {
    cli workers list --json | "$BIN/python" -c '
import json, sys
up = {w["uuid"] for w in json.load(sys.stdin) if w.get("connected")}
print(sum(u in up for u in sys.argv[1:]))' "$@"
}
for _ in $(seq 600); do
    [ "$(count_connected "${uuids[@]}")" -ge ${#uuids[@]} ] && break
    alive
    sleep 0.1
done
fresh=()
for dir in "${new[@]}"; do
    fresh+=("$(cat "$dir/state/uuid")")
    cli admin setstate "${fresh[-1]}" idle >/dev/null
done
count_idle() {
    cli workers list --json | "$BIN/python" -c '
import json, sys
idle = {w["uuid"] for w in json.load(sys.stdin) if w["state"] == "IDLE"}
print(sum(u in idle for u in sys.argv[1:]))' "$@"
}
for _ in $(seq 300); do
    [ "$(count_idle "${fresh[@]}")" -ge ${#fresh[@]} ] && break
    sleep 0.1
done
elapsed=$((($(date +%s%N) - started) / 1000000))

cat <<USAGE

  Boruta farm on $URL, ready in $((elapsed / 1000)).$((elapsed % 1000 / 100)) s (folder $FARM)
$(cli workers list | sed 's/^/    /')

  Dashboard: $URL/  (log in with the admin token, in $FARM/admin.token)

  From another terminal, the boruta command:
    $use
    boruta reserve --caps device_type=rpi4 --ssh    # a shell on the board; try stm -dut, stm -ts
    boruta reserve --caps device_type=rpi4 --wait   # or: wait, then print how to reach it
    boruta requests list                            # boruta requests close N releases N
    boruta workers list

  Each board: $FARM/dryad-*/ (board.json: the simulated STM; oled.png; home/: the job's home)
  Logs: $FARM/coordinator.log, $FARM/dryad-*/dryad.log.  Ctrl-C stops the farm.
USAGE
wait "${pids[0]}"
