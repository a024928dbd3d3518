#!/usr/bin/env python3
"""Renders the chat-template fixtures the template tests compare against.

For every template in tests/data/templates and every conversation below,
transformers' own renderer (jinja2 with trim_blocks, lstrip_blocks, loop
controls, the generation tracker and its tojson) gives the text and the
byte ranges of the {% generation %} blocks, or the error it raised. Two
templates are also tokenized with the tokenizer fixtures to give the ids
and assistant masks `apply_chat_template` returns. Output: OUT/cases.jsonl.

    python3 tests/data/make_templates.py tests/data/templates

With a SmolLM2 model directory (scripts/fetch-smollm2), its stock ChatML
template (written to OUT/smollm2.jinja) is rendered and tokenized too, and
its assistant masks are those of the same template with {% generation %}
markers around each assistant turn's content and <|im_end|> (TRL's
training templates): what trlc must find in the unmarked template.

    python3 tests/data/make_templates.py OUT SMOLLM2_DIR
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


SMOLLM2_MARKED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{ '\n' }}{% else %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

SMOLLM2_CONVERSATIONS = CONVERSATIONS + [
    {"messages": [{"role": "user", "content": "What is the capital of France?"},
                  {"role": "assistant", "content": "The capital of France is Paris."}]},
    {"messages": [{"role": "system", "content": "You answer in one word."},
                  {"role": "user", "content": "Capital of Japan?"},
                  {"role": "assistant", "content": "Tokyo."},
                  {"role": "user", "content": "And of Italy?"},
                  {"role": "assistant", "content": "Rome."}]},
    {"messages": [{"role": "user", "content": "Write code:\n```python\nprint(1)\n```"},
                  {"role": "assistant", "content": "```python\nprint(2)\n```\n\nDone."}]},
    {"messages": [{"role": "user", "content": "12345 + 678"},
                  {"role": "assistant", "content": "13023"}]},
]


def smollm2_cases(out, model_dir):
    """Stock template: text, ids; assistant masks from the marked twin."""
    template = json.load(open(os.path.join(model_dir, "tokenizer_config.json")))["chat_template"]
    with open(os.path.join(out, "smollm2.jinja"), "w") as f:
        f.write(template)
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(model_dir, "tokenizer.json"))
    specials = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}
    cases = []
    for ci, conv in enumerate(SMOLLM2_CONVERSATIONS):
        for agp in (False, True):
            rendered, gen = render_jinja_template(
                [conv["messages"]], chat_template=template, return_assistant_tokens_mask=True,
                add_generation_prompt=agp, **specials)
            marked = tok.apply_chat_template(
                conv["messages"], chat_template=SMOLLM2_MARKED, add_generation_prompt=agp,
                tokenize=True, return_dict=True, return_assistant_tokens_mask=True, **specials)
            enc = tok.apply_chat_template(
                conv["messages"], chat_template=template, add_generation_prompt=agp,
                tokenize=True, return_dict=True, **specials)
            assert list(enc["input_ids"]) == list(marked["input_ids"])
            cases.append({
                "template": "smollm2.jinja", "template_dir": os.path.abspath(out),
                "conversation": ci, "add_generation_prompt": agp,
                "context": {"messages": conv["messages"], "tools": None, "documents": None,
                            "add_generation_prompt": agp, **specials},
                "text": rendered[0], "generation": byte_ranges(rendered[0], gen[0]),
                "tokenizer": "smollm2", "tokenizer_dir": os.path.abspath(model_dir),
                "input_ids": list(enc["input_ids"]),
                "assistant_masks": list(marked["assistant_masks"])})
    return cases


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
    if len(sys.argv) > 2:
        cases += smollm2_cases(out, sys.argv[2])
    with open(os.path.join(out, "cases.jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    print(f"{len(cases)} cases, {sum('error' in c for c in cases)} raising")


if __name__ == "__main__":
    main()
