#!/usr/bin/env bash
# Start a throwaway Garage cluster (a real distributed S3-compatible store, run as its own
# processes like PostgreSQL) on loopback, with one bucket and one access key.
#
#   scripts/garage.sh start DIR NODES BUCKET   → writes DIR/env (source it: READHUB_TEST_S3_URL,
#                                                AWS_ACCESS_KEY_ID, …) and DIR/pids
#   scripts/garage.sh stop DIR
#
# Garage is AGPL: it is installed and run beside readhub, never linked. If it is not on the
# PATH it is built once with `cargo install --locked garage` into ~/.cache/readhub-peers and
# reused from there (the build takes ~10 min on 2 cores).
set -euo pipefail

GARAGE_VERSION=2.5.0
CACHE="${READHUB_PEERS_CACHE:-$HOME/.cache/readhub-peers}"

garage_bin() {
  if command -v garage >/dev/null 2>&1 && garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
    command -v garage
    return
  fi
  local bin="$CACHE/garage-$GARAGE_VERSION/bin/garage"
  if [ ! -x "$bin" ]; then
    echo "== building Garage $GARAGE_VERSION once (cargo install --locked garage; ~10 min)" >&2
    cargo install --locked --quiet garage --version "$GARAGE_VERSION" --root "$CACHE/garage-$GARAGE_VERSION" >&2
  fi
  echo "$bin"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start() {
  local dir=$1 nodes=$2 bucket=$3
  local bin; bin=$(garage_bin)
  mkdir -p "$dir"
  local secret; secret=$(openssl rand -hex 32)
  local s3_ports=() rpc_ports=() admin_ports=()
  for i in $(seq 1 "$nodes"); do
    local n="$dir/node$i"
    mkdir -p "$n/meta" "$n/data"
    local rpc s3 admin
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    rpc_ports+=("$rpc"); s3_ports+=("$s3"); admin_ports+=("$admin")
    cat > "$n/garage.toml" <<EOF
metadata_dir = "$n/meta"
data_dir = "$n/data"
db_engine = "sqlite"
replication_factor = $([ "$nodes" -ge 3 ] && echo 3 || echo 1)
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
EOF
    chmod 600 "$n/garage.toml"
    setsid "$bin" -c "$n/garage.toml" server > "$n/log" 2>&1 &
    echo $! >> "$dir/pids"
  done
  local g1=(env RUST_LOG=warn "$bin" -c "$dir/node1/garage.toml")
  # wait for the first node's RPC, then join the others to it
  local id=""
  for _ in $(seq 1 100); do
    id=$("${g1[@]}" node id -q 2>/dev/null || true)
    [ -n "$id" ] && break
    sleep 0.2
  done
  [ -n "$id" ] || { echo "Garage did not start; its log:" >&2; cat "$dir/node1/log" >&2; exit 1; }
  local ids=("${id%@*}")
  for i in $(seq 2 "$nodes"); do
    local other=""
    for _ in $(seq 1 100); do
      other=$(env RUST_LOG=warn "$bin" -c "$dir/node$i/garage.toml" node id -q 2>/dev/null || true)
      [ -n "$other" ] && break
      sleep 0.2
    done
    "${g1[@]}" node connect "$other" >/dev/null
    ids+=("${other%@*}")
  done
  local z=1
  for nid in "${ids[@]}"; do
    "${g1[@]}" layout assign -z "dc$z" -c 1G "$nid" >/dev/null
    z=$((z + 1))
  done
  "${g1[@]}" layout apply --version 1 >/dev/null
  # the layout takes a moment to reach every node: create the bucket once it answers
  for _ in $(seq 1 100); do
    "${g1[@]}" bucket create "$bucket" >/dev/null 2>&1 && break
    sleep 0.3
  done
  "${g1[@]}" bucket info "$bucket" >/dev/null
  local key; key=$("${g1[@]}" key create readhub-key)
  local key_id secret_key
  key_id=$(echo "$key" | awk '/Key ID/ {print $NF}')
  secret_key=$(echo "$key" | awk '/Secret key/ {print $NF}')
  "${g1[@]}" bucket allow --read --write --owner "$bucket" --key "$key_id" >/dev/null
  local endpoints=()
  for p in "${s3_ports[@]}"; do endpoints+=("http://127.0.0.1:$p"); done
  cat > "$dir/env" <<EOF
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$secret_key
export AWS_REGION=garage
export AWS_ALLOW_HTTP=true
export READHUB_TEST_S3_ENDPOINTS="${endpoints[*]}"
export READHUB_TEST_S3_URL="s3://$bucket?endpoint=${endpoints[0]}"
EOF
}

stop() {
  local dir=$1
  [ -f "$dir/pids" ] && xargs -r kill < "$dir/pids" 2>/dev/null || true
  sleep 0.5
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "$2" "${3:-1}" "${4:-readhub}" ;;
  stop) stop "$2" ;;
  bin) garage_bin ;;
  *) echo "usage: $0 start DIR [NODES] [BUCKET] | stop DIR | bin" >&2; exit 2 ;;
esac
