#!/usr/bin/env bash
# make lint: the linters, pinned as Go tools in tools.mod (kept out of the
# product's module graph: go tool -modfile=tools.mod), with zero findings.
#
#   staticcheck  every default check, unused code (U1000) included, with and
#                without the chdb build tag; an exception is written on its
#                line as //lint:ignore CHECK reason
#   deadcode     exported and unexported functions that nothing reachable
#                from a main package calls, i.e. code only tests call. Two
#                kinds are not findings:
#                - the test-support packages (a name ending in "test":
#                  chtest, natstest, nettest), which exist for tests; this
#                  script checks that no command imports them;
#                - a function whose doc comment carries a line
#                  "// deadcode:keep: <reason>" (what lets a test start a
#                  daemon as a value and read back the address it bound).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
tool() { go tool -modfile=tools.mod "$@"; }
status=0

echo "lint: staticcheck"
tool staticcheck ./... || status=1
tool staticcheck -tags chdb ./internal/clickhouse || status=1

echo "lint: test-support packages stay out of the commands"
module=$(go list -m)
if leaked=$(go list -deps ./cmd/... | grep -E "^$module/.*test$"); then
  echo "a command imports a test-support package:"; echo "$leaked"; status=1
fi

echo "lint: deadcode"
while IFS= read -r finding; do
  [ -z "$finding" ] && continue
  file=${finding%%:*}
  rest=${finding#*:}
  line=${rest%%:*}
  case "$(dirname "$file")" in *test) continue ;; esac
  doc=$(awk -v n="$line" 'NR < n { if ($0 ~ /^\/\//) doc = doc $0 "\n"; else doc = "" } END { printf "%s", doc }' "$file")
  case "$doc" in *"// deadcode:keep: "*) continue ;; esac
  echo "$finding"; status=1
done < <(tool deadcode ./...)

if [ "$status" -ne 0 ]; then
  echo "lint: findings above (scripts/lint.sh says how to write an exception)"
fi
exit "$status"
