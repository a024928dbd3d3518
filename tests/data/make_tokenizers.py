#!/usr/bin/env python3
"""Builds the tokenizer fixtures the tokenizer tests compare against.

Uses the Hugging Face `tokenizers` library (PyPI) to train small BPE
tokenizers of the families trlc reads, then writes, per tokenizer,
OUT/NAME/tokenizer.json, tokenizer_config.json and cases.jsonl: each test
text with the library's ids (with and without special tokens) and its
decode. Run it again to refresh the committed fixtures:

    python3 tests/data/make_tokenizers.py tests/data/tokenizers
"""
import json
import os
import random
import sys

from tokenizers import Regex, Tokenizer, decoders, models, normalizers
from tokenizers import pre_tokenizers, processors, trainers

QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

WORDS = ("the model learns to add numbers and the tokenizer splits words into "
         "pieces while training runs faster when packing removes padding "
         "über naïve café résumé Straße jalapeño façade coöperate "
         "日本語 の テキスト 中文 文本 한국어 текст на русском ελληνικά "
         "def return import class self None True False lambda "
         "don't it's we're they've I'm you'll she'd").split()


def corpus(rng, n):
    lines = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(3, 20)):
            r = rng.random()
            if r < 0.7:
                parts.append(rng.choice(WORDS))
            elif r < 0.85:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 7))))
            else:
                parts.append(rng.choice([",", ".", "!", "?", "(", ")", "==", "->", "'", "\"", ":", ";"]))
        sep = rng.choice([" ", " ", " ", "  ", "\t", "\n", " \n  "])
        lines.append(sep.join(parts))
    return lines


def cases(rng, specials):
    texts = [
        "Hello world",
        " leading space and trailing space ",
        "multiple   spaces\tand\ttabs\n\nand blank lines\n\n\n",
        "numbers 1234567890 3.14159 -42 1,000,000",
        "Unicode: über naïve café — “quotes” 日本語テキスト 한국어 emoji 🤗🚀 end",
        "combining: e\u0301 a\u0308 (NFC composes these)",
        "rare: \u0f00\u13a0\u2603 \U0001f9ec",
        "code: def f(x):\n    return x ** 2  # square\n",
        "don't it's we're they've I'm you'll she'd DON'T IT'S",
        "",
        " ",
        "\n",
        "a",
        "▁already▁has▁the▁meta▁space",
    ]
    for s in specials:
        texts.append(f"{s}user\nWhat is 2+2?{s}\n{s}assistant\n4")
        texts.append(f"text before{s}text after {s} spaced {s}")
        texts.append(s)
    texts += corpus(rng, 40)
    return texts


def bytelevel(pattern, vocab, specials, bos=None, ignore_merges=False):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    return tok, trainer, bos


def write(out, name, tok, config, texts):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(config, f, indent=1, ensure_ascii=False)
    # Reload from disk: the ids must be the saved file's.
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "cases.jsonl"), "w") as f:
        for t in texts:
            ids = tok.encode(t).ids
            f.write(json.dumps({
                "text": t,
                "ids": ids,
                "ids_no_special": tok.encode(t, add_special_tokens=False).ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip": tok.decode(ids, skip_special_tokens=True),
            }, ensure_ascii=False) + "\n")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/tokenizers"
    rng = random.Random(0)
    train = corpus(rng, 3000)

    # Qwen2-style: NFC, Qwen regex, byte-level, no BOS.
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok, trainer, _ = bytelevel(QWEN_PATTERN, 1200, specials)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(train, trainer)
    write(out, "qwen-bytelevel", tok,
          {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": None},
          cases(rng, specials))

    # Llama-3-style: digits in threes, ignore_merges, BOS by the template.
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                "<|start_header_id|>", "<|end_header_id|>"]
    tok, trainer, _ = bytelevel(LLAMA3_PATTERN, 1200, specials, ignore_merges=True)
    tok.train_from_iterator(train, trainer)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A",
                                      special_tokens=[("<|begin_of_text|>", bos)]),
    ])
    write(out, "llama3-bytelevel", tok,
          {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
          cases(rng, specials))

    # Llama-2-style SentencePiece BPE: Prepend + Replace normalizer,
    # byte_fallback, fused unk, BOS by the template.
    specials = ["<unk>", "<s>", "</s>"]
    fallback = [f"<0x{b:02X}>" for b in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                           normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                 split=False)
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials,
                                  show_progress=False, limit_alphabet=120)
    tok.pre_tokenizer = None
    tok.train_from_iterator(["▁" + t.replace(" ", "▁") for t in train], trainer)
    # byte_fallback tokens are ordinary vocabulary entries, as in Llama-2.
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for t in fallback:
        vocab[t] = len(vocab)
    spec["post_processor"] = json.loads(processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]).__getstate__())
    spec["decoder"] = json.loads(decoders.Sequence([
        decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
        decoders.Strip(content=" ", left=1, right=0)]).__getstate__())
    tok = Tokenizer.from_str(json.dumps(spec))
    write(out, "llama2-metaspace", tok,
          {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
          cases(rng, ["<s>", "</s>"]))

    # Mistral-style: Metaspace pre-tokenizer (prepend_scheme first, split),
    # Metaspace decoder.
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first",
                                                 split=True)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(),
                                     decoders.Metaspace(replacement="▁", prepend_scheme="first")])
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials + ["[INST]", "[/INST]"],
                                  show_progress=False, limit_alphabet=120)
    tok.train_from_iterator(train, trainer)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for t in fallback:
        vocab[t] = len(vocab)
    spec["post_processor"] = json.loads(processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", vocab["<s>"])]).__getstate__())
    tok = Tokenizer.from_str(json.dumps(spec))
    write(out, "mistral-metaspace", tok,
          {"bos_token": "<s>", "eos_token": "</s>"},
          cases(rng, ["[INST]", "</s>"]))


if __name__ == "__main__":
    main()
