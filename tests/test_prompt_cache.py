"""The cache of recent prompts' keys and values: which beginning a new prompt may reuse, and
what it keeps within its memory budget (small tensors; the real model is in test_engine)."""

import torch

from engine.prompt_cache import PromptCache

LAYERS, HEADS, DIM = 2, 3, 4
TOKEN_BYTES = LAYERS * 2 * HEADS * DIM * 4  # float32 keys and values of one position


def kv(prompt: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values that say which token each position held, with room after the prompt as a
    growing cache has."""
    tokens = torch.tensor([*prompt, -1, -1], dtype=torch.float32)
    keys = tokens[None, None, :, None].expand(1, HEADS, -1, DIM).contiguous()
    return [(keys + layer, -keys - layer) for layer in range(LAYERS)]


def tokens(prompt: list[int]) -> torch.Tensor:
    return torch.tensor(prompt)


def test_a_prompt_reuses_the_longest_beginning_it_shares_with_a_recent_one() -> None:
    cache = PromptCache(1 << 20)
    cache.add("a", tokens([1, 2, 3, 4, 5]), kv([1, 2, 3, 4, 5]))
    cache.add("a", tokens([1, 2, 9, 9]), kv([1, 2, 9, 9]))
    shared, layers = cache.longest("a", tokens([1, 2, 3, 4, 7, 8]))
    assert shared == 4
    assert len(layers) == LAYERS
    keys, values = layers[1]
    assert keys.shape == (1, HEADS, 4, DIM)
    assert keys[0, 0, :, 0].tolist() == [2.0, 3.0, 4.0, 5.0]  # tokens 1-4 of layer 1
    assert values[0, 0, :, 0].tolist() == [-2.0, -3.0, -4.0, -5.0]


def test_the_last_token_of_a_prompt_is_always_run() -> None:
    cache = PromptCache(1 << 20)
    cache.add("a", tokens([1, 2, 3]), kv([1, 2, 3]))
    assert cache.longest("a", tokens([1, 2, 3]))[0] == 2  # its logits choose the first token
    assert cache.longest("a", tokens([1, 2]))[0] == 1
    assert cache.longest("a", tokens([1]))[0] == 0


def test_prompts_of_another_adapter_or_another_beginning_share_nothing() -> None:
    cache = PromptCache(1 << 20)
    cache.add("support", tokens([1, 2, 3, 4]), kv([1, 2, 3, 4]))
    assert cache.longest("sales", tokens([1, 2, 3, 4, 5])) == (0, [])
    assert cache.longest("support", tokens([7, 2, 3, 4, 5])) == (0, [])


def test_the_kept_keys_are_copies_that_later_writes_do_not_change() -> None:
    cache = PromptCache(1 << 20)
    layers = kv([1, 2, 3])
    cache.add("a", tokens([1, 2, 3]), layers)
    for keys, values in layers:
        keys.fill_(0)
        values.fill_(0)
    _, reused = cache.longest("a", tokens([1, 2, 3, 4]))
    assert reused[0][0][0, 0, :, 0].tolist() == [1.0, 2.0, 3.0]
    assert reused[0][0].shape[2] == 3  # the room after the prompt is not kept


def test_the_least_recently_used_prompts_go_first_when_the_budget_is_full() -> None:
    cache = PromptCache(10 * TOKEN_BYTES)
    cache.add("a", tokens([1, 1, 1, 1]), kv([1, 1, 1, 1]))
    cache.add("a", tokens([2, 2, 2, 2]), kv([2, 2, 2, 2]))
    assert cache.longest("a", tokens([1, 1, 5]))[0] == 2  # used: now the most recent
    cache.add("a", tokens([3, 3, 3, 3]), kv([3, 3, 3, 3]))  # 12 positions: one must go
    assert cache.nbytes <= 10 * TOKEN_BYTES
    assert cache.longest("a", tokens([2, 2, 5]))[0] == 0
    assert cache.longest("a", tokens([1, 1, 5]))[0] == 2
    assert cache.longest("a", tokens([3, 3, 5]))[0] == 2


def test_a_prompt_larger_than_the_budget_is_not_kept_and_keeps_the_others() -> None:
    cache = PromptCache(4 * TOKEN_BYTES)
    cache.add("a", tokens([1, 1, 1]), kv([1, 1, 1]))
    cache.add("a", tokens([2] * 5), kv([2] * 5))
    assert len(cache) == 1
    assert cache.longest("a", tokens([1, 1, 5]))[0] == 2
    assert PromptCache(0).longest("a", tokens([1, 2])) == (0, [])


def test_a_prompt_already_held_is_not_kept_twice_and_a_longer_one_replaces_its_beginning() -> None:
    cache = PromptCache(1 << 20)
    cache.add("a", tokens([1, 2, 3]), kv([1, 2, 3]))
    cache.add("a", tokens([1, 2]), kv([1, 2]))  # the entry holds it all
    assert len(cache) == 1
    cache.add("a", tokens([1, 2, 3, 4]), kv([1, 2, 3, 4]))  # holds all of the entry
    assert len(cache) == 1
    assert cache.nbytes == 4 * TOKEN_BYTES
    assert cache.longest("a", tokens([1, 2, 3, 4, 5]))[0] == 4
