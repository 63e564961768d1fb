#!/usr/bin/env bash
# The developer's stack, without Kubernetes: redis-server, the order service on :3001 and three
# inventory consumers as plain processes, then one sample order and its outcome. Starts in
# seconds; scripts/local-stack.sh is the real thing (a cluster, the operator, pods). Stays up
# until Ctrl-C (or exits after the sample with --once). Everything listens on 127.0.0.1 and is
# stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

once=false; [ "${1:-}" = "--once" ] && once=true
# Not 6379: Debian's redis-server package runs a system Redis there, which the stack must not
# mistake for its own.
REDIS_PORT=${REDIS_PORT:-16379}
ORDER_PORT=${ORDER_PORT:-3001}
MODE=${DELIVERY_MODE:-pubsub}
run_dir=$(mktemp -d -t exactly-once-XXXXXX)

scripts/install-deps.sh
cargo build --quiet -p order -p consumer --bins
bin=target/debug

pids=()
stop() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs were in $run_dir"
}
trap stop EXIT

wait_http() { # url: poll until it answers 200, for up to 20 s
  for _ in $(seq 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "no answer from $1; see $run_dir" >&2; exit 1
}

redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$run_dir" --appendonly yes \
  --maxmemory-policy noeviction --save '' >"$run_dir/redis.log" 2>&1 &
pids+=($!)
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
# The Redis answering must be ours (a port taken by another one would be used silently).
[ "$(redis-cli -p "$REDIS_PORT" info server | tr -d '\r' | sed -n 's/^process_id://p')" = "$redis_pid" ] \
  || { echo "port $REDIS_PORT is another Redis's; set REDIS_PORT" >&2; cat "$run_dir/redis.log" >&2; exit 1; }

export REDIS_URL="redis://127.0.0.1:$REDIS_PORT" DELIVERY_MODE="$MODE"
HTTP_ADDR="127.0.0.1:$ORDER_PORT" "$bin/order-service" >"$run_dir/order-service.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do
  CONSUMER_NAME="inventory-$i" HTTP_ADDR="127.0.0.1:$((8080 + i))" "$bin/inventory-consumer" \
    >"$run_dir/inventory-$i.log" 2>&1 &
  pids+=($!)
done
wait_http "http://127.0.0.1:$ORDER_PORT/readyz"
for i in 1 2 3; do wait_http "http://127.0.0.1:$((8080 + i))/readyz"; done
echo "up: redis :$REDIS_PORT, order service :$ORDER_PORT, consumers :8081-8083 ($MODE mode)"

api="http://127.0.0.1:$ORDER_PORT"
scripts/sample-order.sh "$api"
$once && exit 0
echo "Ctrl-C to stop. Try: curl -X POST -H content-type:application/json -d '{\"items\":[{\"id\":\"001\",\"quantity\":1}]}' $api/orders"
wait
