#!/usr/bin/env bash
# The sample order both stacks place: stock two items, order some of each, wait until a consumer
# has applied it, and print each answer. The last line names the consumer that applied it.
#
#   scripts/sample-order.sh http://127.0.0.1:3001
set -euo pipefail
api=${1:?usage: $0 ORDER_SERVICE_URL}

json='-H content-type:application/json'
curl -fsS -X PUT $json -d '{"quantity": 10}' "$api/inventory/001" >/dev/null
curl -fsS -X PUT $json -d '{"quantity": 5}' "$api/inventory/002" >/dev/null
order_id="sample-$(date +%s)"
echo "POST /orders -> $(curl -sS -X POST $json -d "{\"orderId\":\"$order_id\",\"items\":[{\"id\":\"001\",\"quantity\":2},{\"id\":\"002\",\"quantity\":1}]}" "$api/orders")"
for _ in $(seq 100); do
  status=$(curl -fsS "$api/orders/$order_id")
  case "$status" in *'"status":"accepted"'*) sleep 0.1 ;; *) break ;; esac
done
echo "GET /orders/$order_id -> $status"
echo "GET /inventory -> $(curl -fsS "$api/inventory")"
echo "applied by: $(sed -n 's/.*"consumer":"\([^"]*\)".*/\1/p' <<<"$status")"
