# Sourced by the check scripts: a PASS/FAIL line per check, and the closing
# "N passed, N failed" line that CI reads. Not run on its own.
passed=0
failed=0
pass() { echo "PASS: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
# Prints the closing line; succeeds only when nothing failed.
tally() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
