#!/usr/bin/env python3
"""Data pipeline benchmark: tokenize + pack a generated JSONL corpus.

trlc (`trlc data RECIPE --stats`, the whole data plan: read JSONL, tokenize
with tokenizer.json, append EOS, pack) against its Python peer on the same
corpus, tokenizer and seq_length: the Hugging Face `tokenizers` library
(encode_batch_fast, multi-threaded Rust) + TRL's `pack_dataset` (PyPI). Both
sides use every core. Prints tokens/s of each and the ratio, then checks
that both produced the same packed rows (input_ids and seq_lengths).

    python3 bench/data_pipeline/run.py --trlc build/bin/trlc [--mb 50]

Needs `tokenizers`, `datasets` and `trl` (install trl with --no-deps into a
venv outside the repository; it needs no torch for pack_dataset).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import time

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at "
         "which but have an they you were her she there been one all we their has would when "
         "model training token packing sequence batch gradient memory compiler kernel "
         "über naïve café résumé Straße jalapeño 日本語 テキスト 中文 한국어 текст ελληνικά "
         "def return import class self None True lambda for while if else").split()
PUNCT = [",", ".", "!", "?", ";", ":", "(", ")", "\"", "'", "-", "—"]


def lexicon(rng, n):
    """Pseudo-words from syllables (some accented or non-Latin), so the
    vocabulary is large and Zipf-distributed like real text."""
    syl = ["ka", "to", "ri", "men", "sa", "lo", "ne", "dar", "vi", "qu", "el", "tra", "on",
           "ü", "é", "ñ", "ß", "日", "本", "語", "한", "국", "те", "кст", "λο", "γος"]
    words = list(WORDS)
    while len(words) < n:
        words.append("".join(rng.choice(syl) for _ in range(rng.randint(1, 4))))
    return words


def make_corpus(path, mb, seed=0):
    rng = random.Random(seed)
    words = lexicon(rng, 30000)
    # Zipf weights: the k-th word has weight 1/k.
    cum, total = [], 0.0
    for k in range(len(words)):
        total += 1.0 / (k + 1)
        cum.append(total)
    target = mb * 1024 * 1024
    size = 0
    n = 0
    with open(path, "w") as f:
        while size < target:
            count = int(rng.lognormvariate(5.0, 0.9)) + 5
            picks = rng.choices(words, cum_weights=cum, k=count)
            out = []
            for w in picks:
                r = rng.random()
                if r < 0.08:
                    out.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
                elif r < 0.16:
                    out.append(rng.choice(PUNCT))
                elif r < 0.18:
                    out.append("\n\n")
                out.append(w.capitalize() if rng.random() < 0.1 else w)
            line = json.dumps({"text": " ".join(out)}, ensure_ascii=False) + "\n"
            f.write(line)
            size += len(line.encode())
            n += 1
    return n


def make_tokenizer(directory, corpus, vocab):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    pattern = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    with open(corpus) as f:
        sample = [json.loads(next(f))["text"] for _ in range(20000)]
    tok.train_from_iterator(sample, trainer)
    os.makedirs(directory, exist_ok=True)
    tok.save(os.path.join(directory, "tokenizer.json"))
    with open(os.path.join(directory, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}, f)
    return tok.get_vocab_size()


def write_recipe(path, tokenizer, vocab, corpus, seq_length, strategy):
    with open(path, "w") as f:
        f.write(f"""method = "sft"
[model]
tokenizer = "{tokenizer}"
[model.config]
model_type = "llama"
hidden_size = 64
intermediate_size = 128
num_hidden_layers = 1
num_attention_heads = 2
num_key_value_heads = 2
vocab_size = {vocab}
max_position_embeddings = {seq_length}
[data]
train = "{corpus}"
max_length = {seq_length}
packing = true
packing_strategy = "{strategy}"
""")


def peer(corpus, tokenizer_dir, seq_length, strategy):
    """tokenizers + TRL's pack_dataset, as TRL's SFT data path does it."""
    from datasets import Dataset
    from tokenizers import Tokenizer
    from trl.data_utils import pack_dataset
    tok = Tokenizer.from_file(os.path.join(tokenizer_dir, "tokenizer.json"))
    eos = "<|endoftext|>"
    t0 = time.perf_counter()
    with open(corpus) as f:
        texts = [json.loads(line)["text"] for line in f]
    texts = [t if t.endswith(eos) else t + eos for t in texts]  # TRL's add_eos
    # encode_batch_fast skips the offsets TRL does not use: the faster API.
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)
    ids = [e.ids for e in encode(texts)]
    ds = Dataset.from_dict({"input_ids": ids})
    packed = pack_dataset(ds, seq_length, strategy)
    rows = packed["input_ids"]
    lens = packed["seq_lengths"] if strategy != "wrapped" else None
    seconds = time.perf_counter() - t0
    tokens = sum(len(r) for r in rows)
    return seconds, tokens, rows, lens


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trlc", default="build/bin/trlc")
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--seq-length", type=int, default=1024)
    ap.add_argument("--strategy", default="bfd", choices=["bfd", "bfd_split", "wrapped"])
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--work", default="/tmp/trlc-bench-data")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    os.makedirs(args.work, exist_ok=True)
    corpus = os.path.join(args.work, f"corpus-v2-{args.mb}mb.jsonl")
    if not os.path.exists(corpus):
        rows = make_corpus(corpus, args.mb)
        print(f"corpus: {rows} documents, {os.path.getsize(corpus) / 2**20:.1f} MiB -> {corpus}")
    tokdir = os.path.join(args.work, "tokenizer")
    vocab = make_tokenizer(tokdir, corpus, args.vocab)
    recipe = os.path.join(args.work, "bench.toml")
    write_recipe(recipe, tokdir, vocab, corpus, args.seq_length, args.strategy)
    print(f"corpus {os.path.getsize(corpus) / 2**20:.1f} MiB, byte-level BPE vocab {vocab}, "
          f"seq_length {args.seq_length}, {args.strategy}, {os.cpu_count()} cores")

    trlc_times, peer_times = [], []
    for _ in range(args.runs):  # alternate, best of each
        t0 = time.perf_counter()
        out = subprocess.run([args.trlc, "data", recipe, "--stats"], check=True,
                             capture_output=True, text=True).stdout
        trlc_times.append(time.perf_counter() - t0)
        seconds, tokens, rows, lens = peer(corpus, tokdir, args.seq_length, args.strategy)
        peer_times.append(seconds)
    trlc_tokens = int(next(l for l in out.splitlines() if l.startswith("tokens:")).split()[1])
    t_trlc, t_peer = min(trlc_times), min(peer_times)
    print(f"trlc data                      : {t_trlc:6.2f} s  {trlc_tokens / t_trlc / 1e6:6.2f} M tokens/s")
    print(f"tokenizers + trl.pack_dataset  : {t_peer:6.2f} s  {tokens / t_peer / 1e6:6.2f} M tokens/s")
    print(f"ratio (trlc / peer throughput) : {t_peer / t_trlc:.2f}x")

    # Identical output: every packed row and its document lengths.
    emitted = subprocess.run([args.trlc, "data", recipe, "--emit=jsonl"], check=True,
                             capture_output=True, text=True).stdout.splitlines()
    same = len(emitted) == len(rows)
    for k, line in enumerate(emitted if same else []):
        r = json.loads(line)
        if r["input_ids"] != rows[k] or (lens is not None and r["seq_lengths"] != lens[k]):
            print(f"row {k} differs")
            same = False
            break
    print(f"identical output: {'yes' if same else 'NO'} ({len(emitted)} rows, {trlc_tokens} tokens)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
