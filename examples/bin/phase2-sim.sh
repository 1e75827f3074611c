#!/bin/sh
# Local stand-in for the seed's infrastructure work, so examples/phase2.yaml runs on a fresh
# machine with no servers: each subcommand edits files in a per-run workspace, takes a moment
# and prints what it measured as key=value lines. Usage: phase2-sim.sh SUBCOMMAND [ARG...]
set -eu
work="${TMPDIR:-/tmp}/orchestrator-phase2/${ORCH_RUN_ID:-manual}"
mkdir -p "$work"
compose="$work/docker-compose.yml"
[ -f "$compose" ] || cat > "$compose" <<'YAML'
services:
  redis:
    image: redis:7
    command: ["redis-server"]
  ollama:
    image: ollama/ollama
  api-gateway:
    image: nginx
  postgres:
    image: postgres:15
YAML
pause() { sleep "${1:-0.2}"; }
case "$1" in
  patch-compose)        # add requirepass to the redis service
    pause 0.3
    sed -i 's/command: \["redis-server"\]/command: ["redis-server", "--requirepass", "${REDIS_PASSWORD}"]/' "$compose"
    echo "$(date -u +%FT%TZ) redis: AUTH configured" >> "$work/redis.log"
    grep -q requirepass "$compose" && echo "compose.redis.requirepass=set" ;;
  update-connections)   # services learn the password
    pause 0.2
    for svc in api voice chat; do echo "REDIS_URL=redis://:\${REDIS_PASSWORD}@redis:6379/0" > "$work/$svc.env"; done
    echo "services.updated=3" ;;
  restart)              # restart a (simulated) container
    pause 0.4
    echo "$(date -u +%FT%TZ) $2 restarted" >> "$work/restarts.log"
    echo "container.$2.restarted=1"
    [ -f "$work/redis.log" ] && echo "redis.auth_ok_lines=$(grep -c AUTH "$work/redis.log")"
    true ;;
  validate-auth)        # every service connects with AUTH; count NOAUTH errors
    pause 0.2
    n=$(grep -L 'redis://:' "$work"/*.env 2>/dev/null | wc -l)
    echo "redis.noauth_errors=$n"; [ "$n" -eq 0 ] ;;
  monitor)              # "sample" the given name=value metrics over a short window
    shift; pause 0.3
    for metric in "$@"; do echo "$metric"; done ;;
  analyze-gpu)
    pause 0.3
    if command -v nvidia-smi >/dev/null 2>&1; then
      nvidia-smi --query-gpu=index,utilization.gpu,memory.used --format=csv,noheader
    else
      echo "gpu.count=0 (no NVIDIA driver here: the gpu actions of phase2-infra.yaml need one)"
    fi ;;
  gpu-compose)
    pause 0.3
    printf '    deploy: {resources: {reservations: {devices: [{capabilities: [gpu]}]}}}\n' >> "$compose"
    echo "compose.ollama.gpu=mapped" ;;
  configure)            # write a config fragment
    pause 0.25
    echo "$3" > "$work/$2.conf"; echo "config.$2=written" ;;
  probe)                # an API latency probe against a simulated gateway
    pause 0.15
    echo "http.p50_ms=42"; echo "http.error_rate=0.0" ;;
  query)                # a timed query against a simulated database
    pause 0.2
    echo "db.response_ms.p50=84" ;;
  *) echo "unknown subcommand: $1" >&2; exit 64 ;;
esac
