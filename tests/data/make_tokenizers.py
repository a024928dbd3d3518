#!/usr/bin/env python3
"""Builds the tokenizer fixtures the tokenizer tests compare against.

Uses the Hugging Face `tokenizers` library (PyPI) to train small BPE
tokenizers of the families trlc reads, then writes, per tokenizer,
OUT/NAME/tokenizer.json, tokenizer_config.json and cases.jsonl: each test
text with the library's ids (with and without special tokens) and its
decode. Run it again to refresh the committed fixtures:

    python3 tests/data/make_tokenizers.py tests/data/tokenizers

With a SmolLM2 model directory (scripts/fetch-smollm2) it also writes
OUT/smollm2: the real tokenizer and cases over English, code, digits,
whitespace runs, CRLF, CJK, right-to-left scripts, emoji sequences and
special tokens inside text (not committed: the tokenizer is 1.7 MB):

    python3 tests/data/make_tokenizers.py OUT SMOLLM2_DIR
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


SMOL_ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "I'd like two tickets, please; we're leaving at half past seven.",
    "She said, \"It's not what you think!\" and walked away.",
    "Tokenization splits text into pieces called tokens.",
    "Mr. O'Neil's dog—a terrier—won first prize (again).",
    "ALL CAPS TEXT SHOULD STILL TOKENIZE PROPERLY",
    "e-mail: someone@example.com, web: https://example.org/path?q=1&r=2",
    "Hyphenated-words, semi-colons; colons: and ellipses...",
    "It's 5 o'clock somewhere, isn't it?",
]


def smol_texts(rng):
    texts = list(SMOL_ENGLISH)
    words = ("model data train learn token text small large fast slow good answer "
             "question the a of and to in is that it for on with as was be by").split()
    for _ in range(30):
        texts.append(" ".join(rng.choice(words) for _ in range(rng.randint(3, 25))).capitalize() + ".")
    code = [
        "def add(a, b):\n    return a + b\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}",
        "#include <vector>\nint main() { return 0; }",
        "{\"name\": \"trlc\", \"version\": 1, \"tags\": [\"a\", \"b\"]}",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name;",
        "x = [i ** 2 for i in range(10) if i % 2 == 0]",
        "$ ls -la /tmp && echo \"done\" | grep -v '^#'",
        "class Foo(Bar):\n    def __init__(self):\n        super().__init__()\n",
        "const f = (x) => x?.y ?? 0;  // optional chaining",
        "<div class=\"row\"><span>&amp; &lt;tag&gt;</span></div>",
        "    indented four\n        indented eight\n\tand a tab",
        "if x != None and y <= 3: pass  # comment",
    ]
    texts += code
    for _ in range(18):
        line = rng.choice(code).replace("\n", rng.choice(["\n", "\r\n", "\n\n"]))
        texts.append(line)
    for _ in range(30):
        texts.append(rng.choice(["", "v", "#", "$", "+"]) + str(rng.randint(0, 10 ** rng.randint(1, 12))) +
                     rng.choice(["", ".5", ",000", "%", " km", "e-7"]))
    texts += ["3.14159265358979", "2026-12-02", "+1 (555) 010-9999", "1,234,567.89", "007",
              "0x1F 0b1010 1e10 -0.0", "12:30:45", "version 2.11.3", "1st 2nd 3rd 4th"]
    for _ in range(20):
        ws = "".join(rng.choice([" ", "  ", "\t", "\n", "   ", " \n "]) for _ in range(rng.randint(1, 6)))
        texts.append(rng.choice(["a", "word", "x = 1", ""]) + ws + rng.choice(["b", "end", "", "y"]))
    texts += ["    ", "\t\t", "\n\n\n", " \n", "trailing   ", "   leading", "a\u00a0b"]
    texts += ["line one\r\nline two\r\n", "\r\n", "mixed\r\nand\nunix\rmac",
              "a\r\n\r\nb", "CRLF at end\r\n", "\r\n\r\n\r\n", "tab\t\r\nnewline",
              "x\r", "\ry", "win\r\nlines\r\n  indented\r\n"]
    texts += ["日本語のテキストを分割します。", "中文文本处理很有意思。", "한국어 텍스트입니다.",
              "東京タワーは333メートルです", "漢字とかなと카나와 中文 mixed", "我爱自然语言处理",
              "こんにちは、世界！", "안녕하세요 세계", "今天天气很好，我们去公园吧。",
              "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "「引用」と『二重』", "数字１２３と123",
              "繁體中文與简体中文", "カタカナとひらがな", "한글 123 English"]
    texts += ["مرحبا بالعالم", "هذا نص عربي للاختبار.", "שלום עולם", "זהו טקסט בעברית.",
              "سلام دنیا", "English then عربي then English", "עברית 123 numbers",
              "الأرقام ١٢٣ العربية", "متن فارسی با اعداد ۱۲۳", "(טקסט) [בסוגריים]",
              "\u200fRTL mark", "mixed \u202bembedding\u202c text", "ابجد هوز", "א ב ג ד",
              "قال: \"نعم\""]
    texts += ["👍", "🤗🚀✨", "👨‍👩‍👧‍👦 family", "👍🏽 skin tone", "🇫🇷🇯🇵 flags",
              "❤️ heart with VS16", "emoji🙂inside🙃words", "🏳️‍🌈 rainbow flag",
              "1️⃣ keycap", "🧬🧪🔬", "text 😀 text 😃 text", "🤷‍♀️", "🐍 python",
              "🇺🇳", "☕️ and 🍵"]
    specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>"]
    for sp in specials:
        texts += [f"{sp}user\nHi{sp}", f"before{sp}after", f" {sp} spaced {sp} ", sp]
    texts += ["<|im_start", "im_start|>", "<|im_end|", "< |im_end| >", "<|IM_START|>",
              "<|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nok<|im_end|>\n"]
    return texts


def smollm2(out, model_dir):
    d = os.path.join(out, "smollm2")
    os.makedirs(d, exist_ok=True)
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    config = json.load(open(os.path.join(model_dir, "tokenizer_config.json")))
    texts = smol_texts(random.Random(1)) + cases(random.Random(2), ["<|im_start|>", "<|im_end|>"])
    write(out, "smollm2", tok, config, texts)
    print(f"smollm2: {len(texts)} texts")


if __name__ == "__main__":
    main()
    if len(sys.argv) > 2:
        smollm2(sys.argv[1], sys.argv[2])
