"""Reward functions for the addition demo, written as for TRL's GRPOTrainer.

Use one in a recipe as  reward_funcs = ["python:recipes/rewards/arith.py:close_to_sum"].
trlc runs this file in a helper Python process: each call gets the batch's
prompts, completions and completion_ids, and every other dataset column
(here "answer") as a keyword argument, one value per completion.
"""


def close_to_sum(prompts, completions, completion_ids, answer, **kwargs):
    """1 for the right sum, less the further off the number is, 0 for no number."""
    rewards = []
    for completion, want in zip(completions, answer):
        text = completion.strip()
        if not text.isdigit():
            rewards.append(0.0)
            continue
        off = abs(int(text) - int(want))
        rewards.append(max(0.0, 1.0 - off / 10.0))
    return rewards
