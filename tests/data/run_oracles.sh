#!/bin/sh
# Regenerates the tokenizer and chat-template fixtures with the Python
# oracles (PyPI `tokenizers`, `transformers`/`jinja2`) and runs the C++
# tests against the fresh output. Skips (exit 77) when the oracles are not
# installed; point TRLC_ORACLE_PYTHON at a venv's python to use one.
#   run_oracles.sh FRONTEND_TESTS OUT_DIR
set -eu
tests=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
py=${TRLC_ORACLE_PYTHON:-python3}
if ! "$py" -c "import tokenizers, transformers, jinja2" 2>/dev/null; then
  echo "skip: $py has no tokenizers/transformers/jinja2 (set TRLC_ORACLE_PYTHON to a venv's python)"
  exit 77
fi
rm -rf "$out" && mkdir -p "$out/tokenizers" "$out/templates"
"$py" "$here/make_tokenizers.py" "$out/tokenizers"
"$py" "$here/make_templates.py" "$out/templates" 2>/dev/null
TRLC_TOKENIZER_FIXTURES="$out/tokenizers" TRLC_TEMPLATE_CASES="$out/templates/cases.jsonl" \
  "$tests" --gtest_filter='Tokenizer.*:ChatTemplate.*'
