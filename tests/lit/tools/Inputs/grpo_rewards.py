"""Reward functions for tests/lit/tools/grpo.test, written as for TRL."""
import time


def by_length(prompts, completions, completion_ids, answer, **kwargs):
    # Every fourth reward is missing (None), which the weighted sum skips.
    assert len(answer) == len(completions)
    return [None if i % 4 == 0 else float(len(ids)) for i, ids in enumerate(completion_ids)]


def raises(prompts, completions, **kwargs):
    raise ValueError("this reward is broken")


def wrong_count(prompts, completions, **kwargs):
    return [1.0]


def no_completions(prompts):
    return []


def slow(prompts, completions, **kwargs):
    time.sleep(30)
    return [0.0] * len(completions)


def conversational(prompts, completions, completion_ids, answer, **kwargs):
    # A conversational dataset: prompts as the dataset's messages, each
    # completion one assistant message (TRL's shapes); 1.0 per completion.
    assert "prompt" not in kwargs, kwargs.keys()
    for p, c, ids in zip(prompts, completions, completion_ids):
        assert isinstance(p, list) and p[0]["role"] == "user" and p[0]["content"].endswith("="), p
        assert isinstance(c, list) and len(c) == 1 and c[0]["role"] == "assistant", c
        assert isinstance(c[0]["content"], str), c
    return [1.0] * len(completions)


def digit_sum(prompts, completions, completion_ids, **kwargs):
    # Varies within a group even when every completion has the same length.
    return [float(sum(ids) % 7) / 7.0 for ids in completion_ids]
