#!/bin/bash
# Entrypoint of the Weaver container image (deploy/Dockerfile); also runs outside a container.
#   docker-entrypoint.sh [serve] [FLAGS...]  run `weaver serve` (configured by WEAVER_* variables)
#   docker-entrypoint.sh healthcheck         exit 0 when GET /readyz answers 200, else 1
#   docker-entrypoint.sh weaver ARGS...      any other weaver command (`weaver keygen`, `token`)
#   docker-entrypoint.sh CMD ARGS...         run CMD (a shell for debugging)
# WEAVER_BIN overrides the binary (tests run this script against a fresh build).
set -euo pipefail

weaver=${WEAVER_BIN:-/usr/local/bin/weaver}
listen=${WEAVER_LISTEN:-127.0.0.1:1234}

is_true() {
  case "${1,,}" in
    1 | true | yes | on) return 0 ;;
    *) return 1 ;;
  esac
}

# The port of WEAVER_LISTEN (`0.0.0.0:1234`, `[::]:1234`).
listen_port() { printf '%s\n' "${listen##*:}"; }

# Loopback only when the host part is 127.x.y.z, ::1 or localhost.
listen_is_loopback() {
  local host=${listen%:*}
  host=${host#[}
  host=${host%]}
  case "$host" in
    127.* | ::1 | localhost) return 0 ;;
    *) return 1 ;;
  esac
}

healthcheck() {
  # No curl in the slim image: one HTTP/1.0 request over bash's /dev/tcp, 3 s at most.
  local port status
  port=$(listen_port)
  { exec 3<>"/dev/tcp/127.0.0.1/${port}"; } 2>/dev/null || return 1
  printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  IFS=' ' read -r -t 3 _ status _ <&3 || return 1
  exec 3<&-
  [ "$status" = "200" ]
}

serve() {
  if [ -z "${WEAVER_AUTH_KEY:-}" ] && ! is_true "${WEAVER_INSECURE_NO_AUTH:-false}" && ! listen_is_loopback; then
    cat >&2 <<MSG
weaver: refusing to start without authentication on ${listen}: anyone who can reach the port
could read, write and delete every room.
  Set WEAVER_AUTH_KEY (make one with: docker run --rm IMAGE weaver keygen), or
  set WEAVER_INSECURE_NO_AUTH=true to run open on purpose (a trusted network only).
MSG
    exit 64
  fi
  exec "$weaver" serve "$@"
}

case "${1:-serve}" in
  serve) shift || true; serve "$@" ;;
  -*) serve "$@" ;;
  healthcheck) healthcheck ;;
  weaver) shift; exec "$weaver" "$@" ;;
  *) exec "$@" ;;
esac
