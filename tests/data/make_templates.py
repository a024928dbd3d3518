#!/usr/bin/env python3
"""Renders the chat-template fixtures the template tests compare against.

For every template in tests/data/templates and every conversation below,
transformers' own renderer (jinja2 with trim_blocks, lstrip_blocks, loop
controls, the generation tracker and its tojson) gives the text and the
byte ranges of the {% generation %} blocks, or the error it raised. Two
templates are also tokenized with the tokenizer fixtures to give the ids
and assistant masks `apply_chat_template` returns. Output: OUT/cases.jsonl.

    python3 tests/data/make_templates.py tests/data/templates
"""
import json
import os
import sys

from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

HERE = os.path.dirname(os.path.abspath(__file__))

TOOLS = [{"type": "function", "function": {
    "name": "add", "description": "Adds two numbers — exactly.",
    "parameters": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "number", "default": 1.5}},
        "required": ["a", "b"]}}}]

CONVERSATIONS = [
    {"messages": [{"role": "user", "content": "What is 2+2?"},
                  {"role": "assistant", "content": "4"}]},
    {"messages": [{"role": "system", "content": "  Be brief.\n"},
                  {"role": "user", "content": "Hi\tthere, \"friend\" 😀"},
                  {"role": "assistant", "content": " Hello! \n"},
                  {"role": "user", "content": "Translate: über café 日本"},
                  {"role": "assistant", "content": "over coffee Japan"}]},
    {"messages": [{"role": "user", "content": "Add 3 and 4."},
                  {"role": "assistant", "content": "",
                   "tool_calls": [{"type": "function", "function": {
                       "name": "add", "arguments": {"a": 3, "b": 4}}}]},
                  {"role": "tool", "content": "7"},
                  {"role": "tool", "content": "done"},
                  {"role": "assistant", "content": "It is 7."}],
     "tools": TOOLS},
    {"messages": [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}]},
    {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "a"},
                  {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
                  {"role": "assistant", "content": "d"}, {"role": "user", "content": "e"}]},
    {"messages": [{"role": "narrator", "content": "x"}]},
]

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>"}

TOKENIZED = {"chatml.jinja": "qwen-bytelevel", "llama3.jinja": "llama3-bytelevel"}


def byte_ranges(text, indices):
    return [[len(text[:b].encode()), len(text[:e].encode())] for b, e in indices]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "templates")
    tdir = os.path.join(HERE, "templates")
    cases = []
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".jinja"):
            continue
        template = open(os.path.join(tdir, name)).read()
        tok = None
        if name in TOKENIZED:
            tok = PreTrainedTokenizerFast(
                tokenizer_file=os.path.join(HERE, "tokenizers", TOKENIZED[name], "tokenizer.json"))
            cfg = json.load(open(os.path.join(HERE, "tokenizers", TOKENIZED[name],
                                              "tokenizer_config.json")))
        for ci, conv in enumerate(CONVERSATIONS):
            for agp in (False, True):
                specials = dict(SPECIALS)
                if tok is not None:
                    specials = {"bos_token": cfg.get("bos_token") or "", "eos_token": cfg["eos_token"]}
                case = {"template": name, "conversation": ci, "add_generation_prompt": agp,
                        "context": {"messages": conv["messages"], "tools": conv.get("tools"),
                                    "documents": None, "add_generation_prompt": agp, **specials}}
                try:
                    rendered, gen = render_jinja_template(
                        [conv["messages"]], tools=conv.get("tools"), chat_template=template,
                        return_assistant_tokens_mask=True, add_generation_prompt=agp, **specials)
                    case["text"] = rendered[0]
                    case["generation"] = byte_ranges(rendered[0], gen[0])
                    if tok is not None:
                        enc = tok.apply_chat_template(
                            conv["messages"], tools=conv.get("tools"), chat_template=template,
                            add_generation_prompt=agp, tokenize=True, return_dict=True,
                            return_assistant_tokens_mask=True, **specials)
                        case["tokenizer"] = TOKENIZED[name]
                        case["input_ids"] = list(enc["input_ids"])
                        case["assistant_masks"] = list(enc["assistant_masks"])
                except Exception as e:  # the template raised
                    case["error"] = str(e)
                cases.append(case)
    with open(os.path.join(out, "cases.jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} raising")


if __name__ == "__main__":
    main()
