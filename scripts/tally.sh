# Sourced by the check scripts: a PASS/FAIL line per check, the closing
# "N passed, N failed" line that CI reads, and the checks of HTTP answers
# they share. Not run on its own.
# shellcheck shell=bash
passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
# Prints the closing line; succeeds only when nothing failed.
tally() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

# check NAME COMMAND...: passes when the command succeeds.
check() {
  local name=$1
  shift
  if "$@"; then pass "$name"; else fail "$name"; fi
}
# jq_true JSON JQ-ARGS...: the JSON passes the jq filter (jq -e).
jq_true() {
  local input=$1
  shift
  jq -e "$@" >/dev/null 2>&1 <<<"$input"
}

# http METHOD URL [JSON [HEADER...]]: sets status and body (the error of
# curl when nothing answered), within $http_max_time seconds (10 unless the
# caller sets it). Never through a proxy; needs $work, a directory.
http_max_time=10
status=""
body=""
http() {
  local data=() header
  [ $# -ge 3 ] && data=(-H 'Content-Type: application/json' --data "$3")
  for header in "${@:4}"; do
    data+=(-H "$header")
  done
  status=$(curl --noproxy '*' -sS --max-time "$http_max_time" -o "$work/body" -w '%{http_code}' \
    -X "$1" "${data[@]}" "$2" 2>"$work/curl-error") || status=000
  body=$(cat "$work/body" 2>/dev/null)
  [ "$status" != 000 ] || body=$(cat "$work/curl-error")
  rm -f "$work/body"
}
# expect_http NAME STATUS [JQ-ARGS...] JQ-FILTER: the last answer had STATUS
# and its body passes the filter; prints both when not.
expect_http() {
  local name=$1 want=$2
  shift 2
  if [ "$status" = "$want" ] && jq_true "$body" "$@"; then
    pass "$name"
  else
    fail "$name (wanted $want and ${*: -1}, got $status $body)"
  fi
}
# wait_for SECONDS COMMAND...: retries the command every 0.3 s.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.3
  done
}
