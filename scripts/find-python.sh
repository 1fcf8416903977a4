#!/usr/bin/env bash
# Prints the path of a Python interpreter that pyproject.toml's requires-python allows, or says in
# one line what to install. PYTHON=/path/to/python overrides the search.
set -euo pipefail
cd "$(dirname "$0")/.."
spec=$(sed -n 's/^requires-python *= *"\(.*\)"/\1/p' pyproject.toml)
# ">=3.11,<3.12" -> the lowest and the first excluded minor version
lo=$(sed -n 's/.*>= *\([0-9.]*\).*/\1/p' <<<"$spec")
hi=$(sed -n 's/.*< *\([0-9.]*\).*/\1/p' <<<"$spec")
allowed() {  # the interpreter's X.Y within [lo, hi)
  "$1" -c "import sys; v=sys.version_info[:2]; lo=tuple(map(int,'$lo'.split('.'))); hi=tuple(map(int,'${hi:-99}'.split('.')))
sys.exit(0 if lo <= v < hi else 1)" 2>/dev/null
}
if [ -n "${PYTHON:-}" ]; then
  if allowed "$PYTHON"; then command -v "$PYTHON"; exit 0; fi
  echo "receiptflow: PYTHON=$PYTHON is not a Python $spec; install Python $lo (e.g. 'apt-get install python$lo python$lo-venv' or 'pyenv install $lo') and point PYTHON at it" >&2
  exit 1
fi
seen=()
for cand in "python$lo" python3 python; do
  path=$(command -v "$cand" 2>/dev/null) || continue
  if allowed "$path"; then echo "$path"; exit 0; fi
  seen+=("$cand ($("$path" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo 'does not run'))")
done
echo "receiptflow: needs Python $spec (pyproject.toml requires-python), found ${seen[*]:-no python}; install Python $lo (e.g. 'apt-get install python$lo python$lo-venv' or 'pyenv install $lo'), or run 'make PYTHON=/path/to/python$lo ...'" >&2
exit 1
