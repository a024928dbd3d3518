#!/bin/sh
# Regenerates the tokenizer and chat-template fixtures with the Python
# oracles (PyPI `tokenizers`, `transformers`/`jinja2`, in the venv of
# scripts/python-env), adds SmolLM2-135M-Instruct's tokenizer and template
# (scripts/fetch-smollm2), and runs the C++ tests against the fresh output.
# Skips (exit 77) with the reason when PyPI cannot be reached;
# TRLC_ORACLE_PYTHON names another python to use instead of the venv's.
#   run_oracles.sh FRONTEND_TESTS OUT_DIR
set -eu
tests=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
scripts=$here/../../scripts
if [ -n "${TRLC_ORACLE_PYTHON:-}" ]; then
  py=$TRLC_ORACLE_PYTHON
else
  py=$("$scripts/python-env") || exit $?
fi
smollm2=$("$scripts/fetch-smollm2") || exit $?
rm -rf "$out" && mkdir -p "$out/tokenizers" "$out/templates"
"$py" "$here/make_tokenizers.py" "$out/tokenizers" "$smollm2"
"$py" "$here/make_templates.py" "$out/templates" "$smollm2" 2>/dev/null
TRLC_TOKENIZER_FIXTURES="$out/tokenizers" TRLC_TEMPLATE_CASES="$out/templates/cases.jsonl" \
  "$tests" --gtest_filter='Tokenizer.*:ChatTemplate.*'
