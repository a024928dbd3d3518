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
