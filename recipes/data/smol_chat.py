#!/usr/bin/env python3
"""Writes the chat dataset recipes/smollm2-sft.toml fine-tunes on.

Short factual questions answered in one fixed sentence pattern per topic
(capitals, sums, opposites, plurals), as `messages` conversations, some
with a system message or a second turn; and held-out questions of the same
topics as conversational prompt-completion rows for the greedy eval.
Deterministic: the same files come out on every run.

    python3 recipes/data/smol_chat.py
"""
import json
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Portugal", "Lisbon"), ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"),
    ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("Canada", "Ottawa"), ("Mexico", "Mexico City"),
    ("Brazil", "Brasília"), ("Argentina", "Buenos Aires"), ("Peru", "Lima"), ("Chile", "Santiago"),
    ("Russia", "Moscow"), ("Poland", "Warsaw"), ("Greece", "Athens"), ("Turkey", "Ankara"),
    ("Sweden", "Stockholm"), ("Norway", "Oslo"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Ireland", "Dublin"), ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Belgium", "Brussels"),
    ("the Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Australia", "Canberra"),
    ("New Zealand", "Wellington"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Indonesia", "Jakarta"), ("Morocco", "Rabat"), ("Nigeria", "Abuja"),
    ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"), ("Colombia", "Bogotá"), ("Cuba", "Havana"),
]
OPPOSITES = [
    ("hot", "cold"), ("big", "small"), ("fast", "slow"), ("happy", "sad"), ("light", "dark"),
    ("open", "closed"), ("early", "late"), ("full", "empty"), ("young", "old"), ("hard", "soft"),
    ("strong", "weak"), ("rich", "poor"), ("wet", "dry"), ("loud", "quiet"), ("high", "low"),
    ("long", "short"), ("thick", "thin"), ("clean", "dirty"), ("easy", "difficult"),
    ("first", "last"), ("true", "false"), ("inside", "outside"), ("above", "below"),
    ("buy", "sell"), ("win", "lose"), ("push", "pull"), ("begin", "end"), ("remember", "forget"),
]
PLURALS = [
    ("mouse", "mice"), ("child", "children"), ("foot", "feet"), ("tooth", "teeth"),
    ("man", "men"), ("woman", "women"), ("person", "people"), ("goose", "geese"),
    ("cactus", "cacti"), ("leaf", "leaves"), ("knife", "knives"), ("wolf", "wolves"),
    ("city", "cities"), ("box", "boxes"), ("bus", "buses"), ("baby", "babies"), ("fish", "fish"),
    ("sheep", "sheep"), ("ox", "oxen"), ("crisis", "crises"), ("potato", "potatoes"),
    ("hero", "heroes"), ("church", "churches"), ("glass", "glasses"),
]
SYSTEMS = ["You answer in one short sentence.", "You are a concise assistant.",
           "Answer the question directly."]


def qa(topic, item, rng):
    if topic == "capital":
        country, city = item
        q = rng.choice(["What is the capital of {}?", "Which city is the capital of {}?",
                        "Name the capital of {}."]).format(country)
        return q, f"The capital of {country} is {city}."
    if topic == "sum":
        a, b = item
        q = rng.choice(["What is {} plus {}?", "How much is {} plus {}?", "Add {} and {}."]).format(a, b)
        return q, f"{a} plus {b} is {a + b}."
    if topic == "opposite":
        w, o = item
        q = rng.choice(["What is the opposite of {}?", "Give the opposite of \"{}\".",
                        "What word means the opposite of {}?"]).format(w)
        return q, f"The opposite of {w} is {o}."
    w, p = item
    q = rng.choice(["What is the plural of {}?", "How do you say more than one {}?",
                    "Give the plural of \"{}\"."]).format(w)
    return q, f"The plural of {w} is {p}."


def items(rng):
    sums = [(rng.randint(1, 60), rng.randint(1, 60)) for _ in range(60)]
    out = [("capital", c) for c in CAPITALS] + [("opposite", o) for o in OPPOSITES] + \
          [("plural", p) for p in PLURALS] + [("sum", s) for s in sums]
    rng.shuffle(out)
    return out


def main():
    rng = random.Random(2026)
    pool = items(rng)
    held, train = pool[:16], pool[16:]
    rows = []
    for _ in range(2):  # each fact twice, phrased differently
        for topic, item in train:
            q, a = qa(topic, item, rng)
            messages = []
            if rng.random() < 0.3:
                messages.append({"role": "system", "content": rng.choice(SYSTEMS)})
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            if rng.random() < 0.2:
                t2, i2 = rng.choice(train)
                q2, a2 = qa(t2, i2, rng)
                messages += [{"role": "user", "content": q2}, {"role": "assistant", "content": a2}]
            rows.append({"messages": messages})
    rng.shuffle(rows)
    with open(os.path.join(HERE, "smol-chat.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    with open(os.path.join(HERE, "smol-chat-eval.jsonl"), "w") as f:
        for topic, item in held:
            q, a = qa(topic, item, rng)
            f.write(json.dumps({"prompt": [{"role": "user", "content": q}],
                                "completion": [{"role": "assistant", "content": a}]},
                               ensure_ascii=False) + "\n")
    print(f"{len(rows)} training conversations, {len(held)} held-out questions")


if __name__ == "__main__":
    main()
